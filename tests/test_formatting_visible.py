"""visible(): what ftui prints from a file cannot drive the terminal."""

from ftui.formatting import visible


def test_controls_are_written_out_and_newlines_kept_when_asked():
    assert visible("a\x1b[2Jb\x07\tc\x7f\x9bd\ne") == "a\\x1b[2Jb\\x07\\x09c\\x7f\\x9bd\ne"
    assert visible("one\ntwo\r", newlines=False) == "one\\x0atwo\\x0d"


def test_ordinary_text_is_unchanged():
    text = "résumé · 11.18M values — [bold] ünïcode ✓"
    assert visible(text) == text == visible(text, newlines=False)
