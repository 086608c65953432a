"""Each cleaner on a small sample of the kind of text it is for."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.data.cleaners import CLEANERS, get_cleaner


def test_registry_has_the_documented_cleaners():
    assert {"default", "wikipedia", "subtitles", "dialogue", "gutenberg", "none"} <= set(CLEANERS)
    with pytest.raises(ValueError, match="unknown cleaner"):
        get_cleaner("magic")


def test_default_normalises_line_endings_and_control_characters():
    assert get_cleaner("default")("\ufeffHello\r\nworld\rbye\x00\x07\n") == "Hello\nworld\nbye\n"


def test_default_drops_every_byte_order_mark_and_c1_control():
    # a directory's files are joined before cleaning, so the second file's BOM is inside the text
    joined = "\ufeffFirst file.\n\n\ufeffSecond\x1b file\x9b\x80.\x85Next line\x0c\ttab\n"
    assert get_cleaner("default")(joined) == "First file.\n\nSecond file.\nNext line\ttab\n"


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


def test_subtitles_keeps_a_spoken_number_and_drops_markup():
    raw = ("7\n00:01:00.000 --> 00:01:02.000 X1:40\n{\\an8}<font color=\"#ff0\">How many?</font>\n\n"
           "8\n00:01:03,000 --> 00:01:04,000\n42\n")
    assert get_cleaner("subtitles")(raw) == "How many?\n\n42\n"


CREDITS = [
    "Subtitles by XYZ",
    "Subtitle by: DramaFans",
    "<i>Synced and corrected by chamallow</i>",
    "Sync & corrections by n17t01",
    "- Resync by GoldenBeard -",
    "English Subtitles: A. Smith",
    "Captioning by CaptionMax",
    "Translated by the Subbing Team",
    "Ripped by Rarbg",
    "Downloaded from www.opensubtitles.org",
    "-== [ www.OpenSubtitles.com ] ==-",
    "Advertise your product or brand here",
    "contact www.OpenSubtitles.org today",
    "Support us and become VIP member to remove all ads from www.OpenSubtitles.org",
    "Please rate this subtitle at www.osdb.link/abc",
    "Subtitles downloaded from Podnapisi.NET",
    "www.addic7ed.com",
    "https://example.org/subs",
]


def test_subtitles_drops_credit_and_advert_lines():
    cues = [f"{i}\n00:00:{i:02d},000 --> 00:00:{i:02d},900\n{line}\n" for i, line in enumerate(CREDITS, 1)]
    spoken = ["I was translated into French by accident.", "Who synced these clocks?", "Subtle, by design.",
              "Timing, by the way, is everything."]
    cues += [f"{i}\n00:01:{i:02d},000 --> 00:01:{i:02d},900\n{line}\n" for i, line in enumerate(spoken, 1)]
    assert get_cleaner("subtitles")("\n".join(cues)) == "\n\n".join(spoken) + "\n"


def test_dialogue():
    raw = ("ROMEO:\nBut soft! [Enter JULIET above] What light?\n\nJULIET: Ay me!\n[Exit]\nNurse: Anon!\n"
           "Mrs. Smith: Note the time: ten.\n")
    out = get_cleaner("dialogue")(raw)
    assert out == "But soft! What light?\n\nAy me!\nAnon!\nNote the time: ten.\n"


def test_gutenberg():
    raw = ("The Project Gutenberg eBook of Hamlet\nThis eBook is for the use of anyone anywhere.\n"
           "*** START OF THE PROJECT GUTENBERG EBOOK HAMLET ***\n\n\n\nACT I\nWho's there?\n\n"
           "*** END OF THE PROJECT GUTENBERG EBOOK HAMLET ***\nSection 1. General Terms of Use ... licence\n")
    assert get_cleaner("gutenberg")(raw) == "ACT I\nWho's there?\n"


def test_gutenberg_drops_the_producers_credit_and_the_older_end_line():
    raw = ("\ufeffThe Project Gutenberg EBook of Emma, by Jane Austen\r\n"
           "*** START OF THIS PROJECT GUTENBERG EBOOK EMMA ***\r\n\r\n"
           "Produced by An Anonymous Volunteer, and David Widger\r\nat http://www.pgdp.net\r\n\r\n\r\n"
           "EMMA\r\n\r\nBy Jane Austen\r\n\r\nEnd of the Project Gutenberg EBook of Emma, by Jane Austen\r\n"
           "*** END OF THIS PROJECT GUTENBERG EBOOK EMMA ***\r\n")
    assert get_cleaner("gutenberg")(raw) == "EMMA\n\nBy Jane Austen\n"


_LINES = ["ROMEO:", "  But soft!  ", " = = Heading = = ", "It was n't bad ( really ) .[ 3 ]", "12",
          "00:00:01,000 --> 00:00:03,500", "<i>Hello</i>", "Subtitles by X", "[aside] Mrs. Smith: Hi.",
          "*** START OF THE PROJECT GUTENBERG EBOOK X ***", "Produced by Y", "*** END OF THE PROJECT GUTENBERG EBOOK X ***",
          "\ufeffbom\x07", "tab\there\r", "", "   ", "naïve 🙂"]


@pytest.mark.parametrize("name", sorted(CLEANERS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_cleaning_in_chunks_gives_the_text_cleaned_whole(name, data):
    """A corpus larger than memory is cleaned chunk by chunk (cut after blank lines) with the tidying carried
    across: the same text, character for character, as cleaning it whole."""
    lines = data.draw(st.lists(st.sampled_from(_LINES), max_size=150))
    # a blank line every few lines, so that every chunk of 150 characters has one to end after
    blocks = ["\n".join(lines[i: i + 3]) + "\n" for i in range(0, len(lines), 3)]
    text = "\n".join(blocks) + data.draw(st.sampled_from(["", "\n", "tail  ", "\r\n"]))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=12)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    cleaner = get_cleaner(name)
    assert "".join(cleaner.stream(pieces, chunk_chars=data.draw(st.integers(150, 600)))) == cleaner(text)


def test_gutenberg_cleans_each_file_of_a_directory_whole():
    book = ("header\n*** START OF THE PROJECT GUTENBERG EBOOK {0} ***\nProduced by Y\n\nText of {0}.\n"
            "*** END OF THE PROJECT GUTENBERG EBOOK {0} ***\nlicence\n")
    documents = [[book.format("A")[:30], book.format("A")[30:]], [book.format("B")]]
    assert "".join(get_cleaner("gutenberg").documents(documents)) == "Text of A.\n\nText of B.\n"
    assert "".join(get_cleaner("default").documents([["a\n"], ["b"]])) == "a\n\nb"  # joined, then cleaned


def test_a_wikipedia_heading_at_the_end_of_a_chunk_keeps_the_blank_line_after_it():
    text = "prev .\n = = Heading = = \n\nnext .\n"
    cleaner = get_cleaner("wikipedia")
    assert cleaner(text) == "prev.\n\nnext.\n"
    assert "".join(cleaner.stream([text], chunk_chars=len(text) - 4)) == "prev.\n\nnext.\n"  # cut after the heading
