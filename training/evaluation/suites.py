"""`benchmark MODEL_DIR... --benchmark-config suite.yaml`: a user's own benchmark, its models side by side.

A suite (a YAML file, validated by the pydantic models below) lists cases: a prompt with the completion the user
expects and/or keywords a good continuation should contain, and says which measures to run:

- exact_match: the greedy continuation begins with the expected completion (1 or 0 per case);
- prefix_match: the share of the expected completion's characters the greedy continuation reproduces before its
  first difference;
- expected_logprob: the log-probability of the expected completion given the prompt (its tokens as the model's
  tokenizer writes it after the prompt's tokens), reported as nats per character so models with different
  tokenizers compare;
- keyword_hits: over `sampling.num_samples` sampled continuations, the share of keywords each contains (a keyword
  is looked for as a substring, ignoring case unless `case_sensitive`), averaged;
- repetition: repeated-4-gram rate and distinct-2 of those sampled continuations (as `benchmark` reports them);
- speed: generated tokens per second, ms per step and time to the first token at batch 1 (as `benchmark`).

Without `measures`, every measure the cases make possible runs. Each case i samples with seed `sampling.seed + i`,
so a suite gives the same figures every run (speed apart).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lm import load
from lm.generation import Generator
from lm.options import MAX_NEW_TOKENS, TEMPERATURE
from training.config import ConfigError, read_yaml
from training.evaluation.benchmark import generation_speed, model_summary
from training.evaluation.evaluate import write_json
from training.evaluation.metrics import distinct_n, repetition_rate
from training.evaluation.sampling import MAX_SAMPLES, SamplingSettings, by_definition, validated

Measure = Literal["exact_match", "prefix_match", "expected_logprob", "keyword_hits", "repetition", "speed"]
MEASURES: tuple[str, ...] = get_args(Measure)
NEEDS_EXPECTED = ("exact_match", "prefix_match", "expected_logprob")
NEEDS_KEYWORDS = ("keyword_hits",)
GREEDY_SLACK_TOKENS = 8  # greedy tokens beyond the expected completion's own count (another tokenization of it)


class Sampling(SamplingSettings):
    """How a suite's sampled measures (keyword_hits, repetition, speed) generate: more samples, shorter and a
    little cooler than `evaluate --custom-prompts` by default."""

    num_samples: int = Field(4, ge=1, le=MAX_SAMPLES)
    max_new_tokens: Annotated[int, by_definition(MAX_NEW_TOKENS), Field(ge=1)] = 64
    temperature: Annotated[float, by_definition(TEMPERATURE)] = 0.8


class Case(BaseModel):
    """One prompt, with the completion expected after it and/or keywords a continuation should contain."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1)
    prompt: str
    expected: str | None = Field(None, min_length=1)
    keywords: list[Annotated[str, Field(min_length=1)]] = []

    @model_validator(mode="after")
    def _has_something_to_check(self) -> Case:
        if self.expected is None and not self.keywords:
            raise ValueError("give expected (a completion) or keywords (a list), or both")
        return self


class BenchmarkSuite(BaseModel):
    """A benchmark suite: `BenchmarkSuite.from_yaml("suite.yaml").run(["models/a", "models/b"])`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    measures: list[Measure] | None = Field(None, min_length=1)
    case_sensitive: bool = False
    sampling: Sampling = Sampling()
    cases: list[Case] = Field(min_length=1)

    @model_validator(mode="after")
    def _measures_have_cases(self) -> BenchmarkSuite:
        for measure in self.measures or ():
            if measure in NEEDS_EXPECTED and not any(case.expected for case in self.cases):
                raise ValueError(f"measures: {measure} needs a case with expected (a completion); none has one")
            if measure in NEEDS_KEYWORDS and not any(case.keywords for case in self.cases):
                raise ValueError(f"measures: {measure} needs a case with keywords; none has any")
        names = [case.name for case in self.cases if case.name]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"cases: names must differ; {twice[0]!r} is used twice")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> BenchmarkSuite:
        """The suite a YAML file describes; ConfigError (one line, naming the file and the first bad field)."""
        return cls.from_dict(read_yaml(path), str(path))

    @classmethod
    def from_dict(cls, raw: Any, source: str = "<suite>") -> BenchmarkSuite:
        if not isinstance(raw, dict):
            raise ConfigError(source, "", "expected a mapping with name, cases and optionally measures and sampling")
        return validated(cls, raw, source)

    def chosen_measures(self) -> list[str]:
        """`measures` as given, or every measure the cases make possible, in the order of MEASURES."""
        if self.measures is not None:
            return [m for m in MEASURES if m in self.measures]
        has_expected = any(case.expected for case in self.cases)
        has_keywords = any(case.keywords for case in self.cases)
        return [m for m in MEASURES if (m not in NEEDS_EXPECTED or has_expected)
                and (m not in NEEDS_KEYWORDS or has_keywords)]

    def case_names(self) -> list[str]:
        return [case.name or f"case {i + 1}" for i, case in enumerate(self.cases)]

    def run(self, model_dirs: Sequence[str | Path], device: str = "cpu", max_new_tokens: int | None = None
            ) -> SuiteResult:
        """Every measure on every model (`max_new_tokens` replaces `sampling.max_new_tokens`)."""
        if not model_dirs:
            raise ValueError("a suite runs on at least one model directory")
        settings = self.sampling if max_new_tokens is None else self.sampling.model_copy(
            update={"max_new_tokens": MAX_NEW_TOKENS.check(max_new_tokens)})
        models = []
        for model_dir in model_dirs:  # one model in memory at a time
            with load(model_dir, device=device) as generator:
                models.append(self.run_model(generator, str(model_dir), settings))
        return SuiteResult(self.name, self.description, self.chosen_measures(), self.case_names(),
                           settings.model_dump(), models)

    def run_model(self, generator: Generator, model_dir: str, settings: SamplingSettings) -> dict[str, Any]:
        """One model's figures: per case and their means (`summary`)."""
        measures = self.chosen_measures()
        cases, sampled_ids = [], []
        for i, (case, name) in enumerate(zip(self.cases, self.case_names())):
            figures: dict[str, Any] = {"name": name, "prompt": case.prompt}
            if case.expected is not None and {"exact_match", "prefix_match"} & set(measures):
                figures.update(_greedy_match(generator, case.prompt, case.expected, measures))
            if case.expected is not None and "expected_logprob" in measures:
                figures.update(_expected_logprob(generator, case.prompt, case.expected))
            if "repetition" in measures or (case.keywords and "keyword_hits" in measures):
                result = generator.generate(case.prompt, **settings.options(i), stop_at_eos=False)
                texts = [choice.text for choice in result.choices]
                sampled_ids += [[event.id for event in choice.tokens] for choice in result.choices]
                figures["samples"] = texts
                if case.keywords and "keyword_hits" in measures:
                    figures["keyword_hits"] = _keyword_hits(texts, case.keywords, self.case_sensitive)
            cases.append(figures)
        summary: dict[str, Any] = {}
        for key in ("exact_match", "prefix_match", "expected_nats_per_char", "keyword_hits"):
            values = [figures[key] for figures in cases if key in figures]
            if values:
                summary[key] = sum(values) / len(values)
        if "repetition" in measures:
            summary["repetition_rate"] = repetition_rate(sampled_ids)
            summary["distinct_2"] = distinct_n(sampled_ids, 2)
        if "speed" in measures:
            speed = generation_speed(generator, self.cases[0].prompt, settings.max_new_tokens, settings.seed, (1,))
            summary["tokens_per_second"] = speed["batch_1"]["tokens_per_second"]
            summary["speed"] = speed
        return {**model_summary(generator, model_dir), "summary": summary, "cases": cases}


def _greedy_match(generator: Generator, prompt: str, expected: str, measures: list[str]) -> dict[str, Any]:
    """The greedy continuation, long enough to hold the expected completion, compared with it."""
    tokens = len(generator.tokenizer.encode(expected)) + GREEDY_SLACK_TOKENS
    text = generator.generate(prompt, max_new_tokens=tokens, temperature=0.0, stop_at_eos=False).text
    same = 0
    for got, wanted in zip(text, expected):
        if got != wanted:
            break
        same += 1
    out: dict[str, Any] = {"greedy": text[: max(len(expected), 80)]}
    if "exact_match" in measures:
        out["exact_match"] = float(same == len(expected))
    if "prefix_match" in measures:
        out["prefix_match"] = same / len(expected)
    return out


def _expected_logprob(generator: Generator, prompt: str, expected: str) -> dict[str, float]:
    """log P(expected | prompt): the prompt's tokens (the start token for an empty prompt, as generation feeds
    it) followed by the expected completion's, scored as `evaluate` reads a text (Generator.score)."""
    context = generator.prompt_ids(prompt) or [generator.tokenizer.start_id]
    completion = generator.tokenizer.encode(expected)
    scores = generator.score(context + completion)
    logprob = sum(score.logprob for score in scores[len(context):])
    return {"expected_logprob": logprob, "expected_nats_per_char": -logprob / len(expected)}


def _keyword_hits(texts: list[str], keywords: list[str], case_sensitive: bool) -> float:
    """Mean over the texts of the share of keywords each contains."""
    fold: Callable[[str], str] = (lambda t: t) if case_sensitive else str.casefold
    wanted = [fold(k) for k in keywords]
    return sum(sum(k in fold(text) for k in wanted) / len(wanted) for text in texts) / len(texts)


@dataclass
class SuiteResult:
    """A suite's figures for each model; `markdown()` is the table `benchmark` prints, `to_dict()` its JSON."""

    suite: str
    description: str
    measures: list[str]
    cases: list[str]
    sampling: dict[str, Any]
    models: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "description": self.description, "measures": self.measures,
                "cases": self.cases, "sampling": self.sampling, "models": self.models}

    def save(self, path: str | Path) -> None:
        write_json(self.to_dict(), path)

    def rows(self) -> list[tuple[str, list[str]]]:
        """(label, one cell per model) for each row of the table; the best of each measured row in bold."""
        rows = [("type", [m["model_type"] for m in self.models]),
                ("parameters", [f"{m['parameters']:,}" for m in self.models])]
        for key, label, better in _summary_rows(self):
            rows.append((label, _cells([m["summary"].get(key) for m in self.models], better)))
        for i, name in enumerate(self.cases):
            for key, label, better in _CASE_ROWS:
                values = [m["cases"][i].get(key) for m in self.models]
                if any(v is not None for v in values):
                    rows.append((f"{name}: {label}", _cells(values, better)))
        return rows

    def markdown(self) -> str:
        names = [m["model"] for m in self.models]
        cases = f"{len(self.cases)} case{'s' if len(self.cases) != 1 else ''}"
        lines = [f"Suite {self.suite!r}: {cases}, measures {', '.join(self.measures)}", "",
                 "| measure | " + " | ".join(_escaped(n) for n in names) + " |",
                 "| --- |" + " ---: |" * len(names)]
        lines += [f"| {_escaped(label)} | " + " | ".join(cells) + " |" for label, cells in self.rows()]
        if len(names) > 1:
            lines += ["", "Bold: the best model of a row (lower is better for nats/char and repetition)."]
        return "\n".join(lines)


# (summary key, row label, which is better: max or min)
_SUMMARY_ROWS = (
    ("exact_match", "exact match (greedy)", max),
    ("prefix_match", "prefix match (greedy)", max),
    ("expected_nats_per_char", "expected completion, nats/char", min),
    ("keyword_hits", "keyword hit rate (sampled)", max),
    ("repetition_rate", "repetition (sampled, 4-grams)", min),
    ("distinct_2", "distinct-2 (sampled)", max),
    ("tokens_per_second", "tokens/s at batch 1", max),
)
_CASE_ROWS = (
    ("prefix_match", "prefix match", max),
    ("expected_nats_per_char", "nats/char", min),
    ("keyword_hits", "keyword hits", max),
)


def _summary_rows(result: SuiteResult) -> list[tuple[str, str, Callable]]:
    return [row for row in _SUMMARY_ROWS if any(row[0] in m["summary"] for m in result.models)]


def _cells(values: list[float | None], better: Callable) -> list[str]:
    """The values as shown; the best in bold, unless all that are shown look the same (0.583 and 0.583 are a tie,
    whatever their last bits)."""
    texts = ["-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3f}" for v in values]
    shown = [(v, t) for v, t in zip(values, texts) if v is not None]
    if len({t for _, t in shown}) < 2:
        return texts
    best = better(shown, key=lambda pair: pair[0])[1]
    return [f"**{t}**" if t == best else t for t in texts]


def _escaped(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
