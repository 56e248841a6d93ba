"""How ftui writes numbers for people, the same in the CLI, the workbench and the exports."""

import math


def param_count(n: int) -> str:
    """11.18M, 9.4k, 128."""
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e3:.1f}k" if n >= 1_000 else str(n)


def share(part: float, whole: float) -> str:
    """part of whole in percent, never rounded to a figure it is not: "100%" only when all of it,
    "0%" only when none, else as many decimals as tell it apart (99.98%, 0.05%), then ">99.99%" or "<0.01%"."""
    if whole <= 0 or part <= 0:
        return "0%"
    if part >= whole:
        return "100%"
    percent = 100 * part / whole
    for decimals in (1, 2):
        text = f"{percent:.{decimals}f}"
        if 0 < float(text) < 100:
            return f"{text}%"
    return "<0.01%" if percent < 50 else ">99.99%"


def duration(seconds: float | None) -> str:
    """7s, 2m05s, 1h02m: short enough for a table at 80 columns, never read as a time of day;
    "" when there is none."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return ""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def shorten(text: str, width: int) -> str:
    """The first line of text in at most width characters, ending in "…" where anything was left out."""
    line = text.splitlines()[0] if text else ""
    if len(line) <= width and line == text:
        return line
    return line[: max(width - 1, 0)].rstrip() + "…"


# C0 controls, DEL and the C1 range: a terminal may act on any of them (clear the screen, retitle the
# window, move the cursor). Text read from files (checkpoint metadata, names, paths) shows them as \xNN.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]}
_CONTROLS_BUT_NEWLINE = {c: v for c, v in _CONTROLS.items() if c != 0x0A}


def visible(text: str, newlines: bool = True) -> str:
    """text with every control character written out as \\xNN (newlines kept when newlines is True)."""
    return text.translate(_CONTROLS_BUT_NEWLINE if newlines else _CONTROLS)


def plain_line(value: object) -> str:
    """A value read from a file (a name, a path, metadata), for one line of output: no control character."""
    return visible(str(value), newlines=False)
