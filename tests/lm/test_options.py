"""lm/checks.py and lm/options.py: the value checks every layer uses and the generation options' one definition."""

import dataclasses
import math

import pytest

from lm import checks
from lm.checks import OptionError
from lm.generation import GenerationOptions
from lm.options import OPTIONS, SEED, STOP, TEMPERATURE, TOP_P, Option


@pytest.mark.parametrize(
    "check, value, problem",
    [
        (lambda v: checks.integer("n", v), True, "must be an integer, got True"),
        (lambda v: checks.integer("n", v), 2.0, "must be an integer, got 2.0"),
        (lambda v: checks.integer("n", v, minimum=1), 0, "must be >= 1, got 0"),
        (lambda v: checks.integer("n", v, 0, 8), 9, "must be in [0, 8], got 9"),
        (lambda v: checks.number("x", v), False, "must be a number, got False"),
        (lambda v: checks.number("x", v), "1", "must be a number, got '1'"),
        (lambda v: checks.number("x", v), math.nan, "must be a finite number, got nan"),
        (lambda v: checks.number("x", v, exclusive_minimum=0), 0, "must be > 0, got 0"),
        (lambda v: checks.number("x", v, minimum=0, exclusive_maximum=1), 1, "must be in [0, 1), got 1"),
        (lambda v: checks.boolean("b", v), 1, "must be true or false, got 1"),
        (lambda v: checks.text("s", v), b"x", "must be a string, got b'x'"),
        (lambda v: checks.text("s", v), "ab\ud800", "must be valid Unicode text (a lone surrogate at 2)"),
        (lambda v: checks.text("s", v, max_length=2), "abc", "must have at most 2 characters, got 3"),
        (lambda v: checks.strings("l", v), "abc", "must be a list of strings, got 'abc'"),
        (lambda v: checks.strings("l", v), ["a", ""], "strings must not be empty"),
        (lambda v: checks.strings("l", v, max_items=1), ["a", "b"], "takes at most 1 strings, got 2"),
        (lambda v: checks.one_of("k", v, ("a", "b")), "c", "must be one of a, b, got 'c'"),
        (lambda v: checks.integer_from("n", v), " 1.5", "must be an integer, got ' 1.5'"),
        (lambda v: checks.number_from("x", v, exclusive_minimum=0), "nan", "must be a finite number, got nan"),
        (lambda v: checks.duration_from("t", v), "5x", f"must be {checks.DURATION_FORMATS}, got '5x'"),
        (lambda v: checks.duration_from("t", v), "1m2h", f"must be {checks.DURATION_FORMATS}, got '1m2h'"),
        (lambda v: checks.duration_from("t", v), "", f"must be {checks.DURATION_FORMATS}, got ''"),
        (lambda v: checks.duration_from("t", v), True, f"must be {checks.DURATION_FORMATS}, got True"),
        (lambda v: checks.duration_from("t", v, exclusive_minimum=0), "0s", "must be > 0, got 0.0"),
    ],
)
def test_a_refused_value_names_its_option_and_the_problem(check, value, problem):
    with pytest.raises(OptionError) as caught:
        check(value)
    assert caught.value.problem == problem
    assert str(caught.value) == f"{caught.value.option} {problem}"
    assert isinstance(caught.value, ValueError)


def test_accepted_values_come_back_as_their_type():
    assert checks.number("x", 2) == 2.0 and isinstance(checks.number("x", 2), float)
    assert checks.integer_from("n", " 64 ", minimum=1) == 64 and checks.number_from("x", "2.5") == 2.5
    assert checks.strings("l", ["a", "b"]) == ("a", "b")
    assert checks.shown("x" * 100) == repr("x" * 100)[:37] + "..."


@pytest.mark.parametrize("text, seconds", [("90", 90), (" 2.5 ", 2.5), ("90s", 90), ("30m", 1800), ("2h", 7200),
                                           ("1h30m", 5400), ("1.5h", 5400), ("2h 15m 10s", 8110), (45, 45)])
def test_a_duration_is_seconds_or_hours_minutes_seconds(text, seconds):
    assert checks.duration_from("t", text) == seconds


def test_generation_options_are_the_definitions_with_their_defaults():
    fields = dataclasses.fields(GenerationOptions)
    assert [f.name for f in fields] == [option.name for option in OPTIONS]
    assert [f.default for f in fields] == [option.default for option in OPTIONS]
    assert GenerationOptions(stop="\n").stop == ("\n",)  # one string on its own is a list of one


@pytest.mark.parametrize("option", OPTIONS, ids=lambda o: o.name)
def test_every_default_passes_its_own_check(option):
    assert option.check(option.default) == option.default


def test_temperature_is_zero_or_within_its_range():
    assert TEMPERATURE.check(0) == 0 and TEMPERATURE.check(1e-3) == 1e-3 and TEMPERATURE.check(100) == 100.0
    for value in (1e-4, -1, 100.5):
        with pytest.raises(OptionError, match=r"temperature must be 0 or in \[0.001, 100\]"):
            TEMPERATURE.check(value)


def test_bounds_and_nullable_options():
    assert TOP_P.bounds_text() == "in (0, 1]" and TOP_P.check(1) == 1.0
    assert SEED.check(None) is None and SEED.check(2**63 - 1) == 2**63 - 1
    with pytest.raises(OptionError, match="seed must be in"):
        SEED.check(2**63)
    with pytest.raises(OptionError, match="stop"):
        STOP.check([""])


def test_narrowing_applies_a_policy_to_a_copy():
    capped = STOP.narrowed(max_items=2, max_length=3)
    assert capped.check(["ab"]) == ("ab",) and STOP.check(["abcd"] * 3) == ("abcd",) * 3
    for value in (["a", "b", "c"], ["abcd"]):
        with pytest.raises(OptionError, match="stop"):
            capped.check(value)


def test_parse_reads_a_command_line_value_and_checks_it():
    assert TEMPERATURE.parse("0.7") == 0.7 and SEED.parse("12") == 12
    with pytest.raises(OptionError, match="temperature must be a number"):
        TEMPERATURE.parse("hot")
    with pytest.raises(OptionError, match="top_p must be in"):
        TOP_P.parse("2")
    assert Option("flag", str, "", "A string option.").parse("x") == "x"
