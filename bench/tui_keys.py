"""How quickly the workbench answers keys while a CPU run trains (not a test).

Starts `ftui` in tmux (80x24) on the shipped catalog, launches `quickstart`,
then, while it trains, alternates two keys that switch screens (Esc: run ->
catalog, v: catalog -> run) and times each from send-keys until the new
screen's text is on the terminal, polling `tmux capture-pane` every 10 ms (each poll is a process of its
own, so polling faster steals the CPU it measures).
The figure includes tmux's own round trip, so it is an upper bound.

    .venv/bin/python bench/tui_keys.py [--presses 40]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SESSION = "ftui-bench-keys"


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen() -> str:
    return tmux("capture-pane", "-p", "-t", SESSION)


def wait_for(text: str, timeout: float = 120.0, poll: float = 0.01) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if text in screen():
            return time.perf_counter() - start
        time.sleep(poll)
    raise TimeoutError(f"{text!r} never appeared:\n{screen()}")


def press(key: str, expect: str) -> float:
    start = time.perf_counter()
    tmux("send-keys", "-t", SESSION, key)
    wait_for(expect)
    return time.perf_counter() - start


def report(what: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(f"{what}, {len(ms)} presses while quickstart trained on the CPU: "
          f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presses", type=int, default=40)
    args = parser.parse_args()
    if not shutil.which("tmux"):
        print("tmux is needed: apt-get install tmux")
        return 1
    runs = Path(tempfile.mkdtemp(prefix="ftui-bench-"))
    command = f"cd {REPO} && {sys.executable} -m ftui --runs {runs}"
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", command)
    try:
        wait_for("quickstart")
        tmux("send-keys", "-t", SESSION, "l")
        wait_for("img/s")  # training is going: steps are being reported
        to_catalog, to_run = [], []
        for _ in range(args.presses // 2):
            to_catalog.append(press("Escape", "experiment"))  # the catalog's table header
            to_run.append(press("v", "img/s"))  # back on the live run
        press("Escape", "experiment")
        moves = []
        for i in range(args.presses // 2):  # the cursor moves, and the description line under the table follows
            moves.append(press("Down", "§3.1 ResNet18 from scratch, ImageNet stem"))
            moves.append(press("Up", "embedded CIFAR-10 sample"))
        report("run -> catalog (Esc)", to_catalog)
        report("catalog -> live run (v)", to_run)
        report("cursor moves in the catalog (Down / Up)", moves)
        print(screen())
    finally:
        tmux("send-keys", "-t", SESSION, "C-q")
        time.sleep(0.5)
        tmux("send-keys", "-t", SESSION, "y")
        time.sleep(3)
        tmux("kill-session", "-t", SESSION)
        shutil.rmtree(runs, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
