"""How busy the training process keeps the CPU: its share of one core, read from /proc between two looks.

The run trains in another process (a child of the workbench, or of another ftui), so the screen asks
the kernel rather than the process: /proc/PID/stat holds the CPU time of all its threads. Linux only;
elsewhere, or when the process is gone, there is nothing to show.
"""

from __future__ import annotations

import os
import time


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process pid and all its threads, in seconds; None if unreadable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces: count fields after it.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    except (IndexError, ValueError, OSError):
        return None


class CpuMeter:
    """Percent of one core a process used between readings at least MIN_INTERVAL apart (100% = one core)."""

    MIN_INTERVAL = 0.5  # seconds: shorter intervals hold too few clock ticks to mean much

    def __init__(self) -> None:
        self._sample: tuple[int, float, float] | None = None  # pid, its CPU seconds, when read
        self.percent: float | None = None

    def read(self, pid: int | None) -> float | None:
        used = cpu_seconds(pid) if isinstance(pid, int) else None
        now = time.monotonic()
        if pid is None or used is None or self._sample is None or self._sample[0] != pid:
            self._sample = (pid, used, now) if pid is not None and used is not None else None
            self.percent = None
        elif now - self._sample[2] >= self.MIN_INTERVAL:
            self.percent = 100 * (used - self._sample[1]) / (now - self._sample[2])
            self._sample = (pid, used, now)
        return self.percent
