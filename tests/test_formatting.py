"""How ftui writes text for people: the one place long text is cut."""

from __future__ import annotations

from ftui.formatting import shorten


def test_shorten_keeps_what_fits_and_marks_what_it_cut():
    assert shorten("layer4, fc", 10) == "layer4, fc"
    assert shorten("layer3, layer4, fc", 10) == "layer3, l…"
    assert shorten("all but conv1, bn1", 9) == "all but…"  # no space left before the mark
    assert shorten("first line\nsecond line", 40) == "first line…"  # more lines: said by the mark
    assert shorten("", 5) == "" and len(shorten("x" * 100, 12)) == 12
