"""A pytest plugin for bench/gpu_check.py: each test's start and outcome, as a JSON line the moment it is known.

    python -m pytest -p gpu_check_pytest ...   (bench/ on PYTHONPATH, FTUI_PYTEST_RESULTS naming the file)

A JUnit file is written only once pytest ends, and the check stops a pytest that outruns its budget:
line by line, what was learnt before that stays, and the last test started names the one it was in.
"""

from __future__ import annotations

import json
import os

RESULTS = "FTUI_PYTEST_RESULTS"


def _write(record: dict) -> None:
    path = os.environ.get(RESULTS)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _message(report) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")  # (file, line, reason)
    return report.longreprtext[-2000:] if report.failed else ""


def pytest_runtest_logstart(nodeid, location):
    _write({"test": nodeid, "phase": "start"})


def pytest_runtest_logreport(report):
    _write(
        {
            "test": report.nodeid,
            "phase": report.when,  # setup, call or teardown
            "outcome": report.outcome,
            "seconds": round(report.duration, 2),
            "message": _message(report),
        }
    )
