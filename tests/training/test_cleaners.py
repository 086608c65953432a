"""Each cleaner on a small sample of the kind of text it is for."""

from __future__ import annotations

import pytest

from training.cleaners import CLEANERS, get_cleaner


def test_registry_has_the_documented_cleaners():
    assert {"default", "wikipedia", "subtitles", "dialogue", "gutenberg", "none"} <= set(CLEANERS)
    with pytest.raises(ValueError, match="unknown cleaner"):
        get_cleaner("magic")


def test_default_normalises_line_endings_and_control_characters():
    assert get_cleaner("default")("\ufeffHello\r\nworld\rbye\x00\x07\n") == "Hello\nworld\nbye\n"


def test_default_leaves_clean_text_untouched():
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    assert get_cleaner("default")(text) == text


def test_none_is_the_identity():
    assert get_cleaner("none")(" = = x = = \r\n") == " = = x = = \r\n"


def test_wikipedia():
    raw = (" = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles is a tactical role @-@ "
           "playing game [ 1 ] [2] , released in 2011 , selling 1 @.@ 5 million copies to 1 @,@ 000 shops .\n"
           " = = Gameplay = = \n \n It was n't bad ( really ) .[citation needed]\n")
    out = get_cleaner("wikipedia")(raw)
    assert "=" not in out and "Gameplay" not in out
    assert "role-playing" in out and "2011, selling" in out and "1.5 million" in out and "1,000 shops" in out
    assert "[2]" not in out and "citation needed" not in out
    assert "shops." in out and "wasn't" in out
    assert "Chronicles: " not in out and "(really)." in out
    assert "  " not in out and out.endswith("\n")


def test_subtitles():
    raw = ("1\n00:00:01,000 --> 00:00:03,500\n<i>Hello there.</i>\n\n2\n00:00:04,000 --> 00:00:06,000\n"
           "General Kenobi!\nYou are a bold one.\n\n")
    assert get_cleaner("subtitles")(raw) == "Hello there.\n\nGeneral Kenobi!\nYou are a bold one.\n"


def test_dialogue():
    raw = "ROMEO:\nBut soft! [Enter JULIET above] What light?\n\nJULIET: Ay me!\n[Exit]\nNurse: Anon!\n"
    out = get_cleaner("dialogue")(raw)
    assert "ROMEO" not in out and "JULIET:" not in out and "Nurse:" not in out
    assert "[" not in out and "Exit" not in out
    assert "But soft! What light?" in out and "Ay me!" in out and "Anon!" in out


def test_gutenberg():
    raw = ("The Project Gutenberg eBook of Hamlet\nThis eBook is for the use of anyone anywhere.\n"
           "*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\n\n\n\nACT I\nWho's there?\n\n"
           "*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nSection 1. General Terms of Use ... licence\n")
    assert get_cleaner("gutenberg")(raw) == "ACT I\nWho's there?\n"
