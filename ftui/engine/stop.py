"""A stop flag for a run that also records who asked, so a stopped run says why."""

from __future__ import annotations

import threading


class StopRequest(threading.Event):
    """set() stops a run after its current step; request(why) does the same and keeps the first why."""

    def __init__(self) -> None:
        super().__init__()
        self.why = ""

    def request(self, why: str) -> None:
        if not self.is_set():
            self.why = why
        self.set()


def stop_reason(stop: threading.Event, epochs_done: int, epochs: int) -> str:
    """Why a run stopped, shown after its state: "stopped: by SIGTERM after 2 of 20 epochs"."""
    why = getattr(stop, "why", "") or "by request"
    return f"{why} after {epochs_done} of {epochs} epochs"
