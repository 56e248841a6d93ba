"""How ftui writes text for people: the one place long text is cut."""

from __future__ import annotations

from ftui.formatting import shorten


def test_shorten_keeps_what_fits_and_marks_what_it_cut():
    assert shorten("layer4, fc", 10) == "layer4, fc"
    assert shorten("layer3, layer4, fc", 10) == "layer3, l…"
    assert shorten("all but conv1, bn1", 9) == "all but…"  # no space left before the mark
    assert shorten("first line\nsecond line", 40) == "first line…"  # more lines: said by the mark
    assert shorten("", 5) == "" and len(shorten("x" * 100, 12)) == 12


def test_share_says_100_only_for_all_and_0_only_for_none():
    from ftui.formatting import share

    resnet18 = 11_173_962  # CIFAR stem, 10 classes
    assert share(resnet18, resnet18) == "100%" and share(0, resnet18) == "0%"
    assert share(resnet18 - 1_856, resnet18) == "99.98%"  # conv1 and bn1 frozen: not 100.0%
    assert share(5_130, resnet18) == "0.05%"  # only the head: not 0.0%
    assert share(2_782_730, resnet18) == "24.9%"
    assert share(1, resnet18) == "<0.01%" and share(resnet18 - 1, resnet18) == ">99.99%"
    assert share(1, 3) == "33.3%" and share(0, 0) == "0%"
