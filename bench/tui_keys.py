"""How quickly the workbench answers keys while a CPU run trains (not a test).

Starts `ftui` in tmux (80x24) on the shipped catalog, launches `quickstart`,
then, while it trains, alternates two keys that switch screens (Esc: run ->
catalog, v: catalog -> run) and times each from send-keys until the new
screen's text is on the terminal, polling `tmux capture-pane` every 10 ms (each poll is a process of its
own, so polling faster steals the CPU it measures).
The figure includes tmux's own round trip, so it is an upper bound.

Before each key it waits --pause seconds, as a person reads the screen before
the next key; --pause 0 presses back to back, the moment the last screen shows.
Then it watches the live run for --watch seconds and counts how often the
plots change on the terminal.

    .venv/bin/python bench/tui_keys.py [--presses 40] [--pause 0.3] [--watch 20]
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


def press(key: str, expect: str, pause: float = 0.0) -> float:
    time.sleep(pause)
    start = time.perf_counter()
    tmux("send-keys", "-t", SESSION, key)
    wait_for(expect)
    return time.perf_counter() - start


def report(what: str, times: list[float]) -> None:
    ms = sorted(t * 1000 for t in times)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    print(
        f"{what}, {len(ms)} presses while quickstart trained on the CPU: "
        f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms"
    )


def plot_redraws(seconds: float) -> tuple[int, int]:
    """Changes of the plot area and steps reported (the progress line), seen on the terminal."""
    plots, steps, last_plot, last_step = 0, 0, None, None
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        lines = screen().splitlines()
        plot, step = "\n".join(lines[5:-7]), next((line for line in lines if "step " in line and "img/s" in line), "")
        step = step.split("step ")[1].split(" ")[0] if step else None
        plots += last_plot is not None and plot != last_plot
        steps += last_step is not None and step != last_step
        last_plot, last_step = plot, step
        time.sleep(0.05)
    return plots, steps


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presses", type=int, default=40)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between presses (0: back to back)")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds to watch the plots redraw")
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
            to_catalog.append(press("Escape", "experiment", args.pause))  # the catalog's table header
            to_run.append(press("v", "img/s", args.pause))  # back on the live run
        time.sleep(1)
        plots, steps = plot_redraws(args.watch)
        press("Escape", "experiment")
        moves = []
        for _ in range(args.presses // 2):  # the cursor moves, and the description line under the table follows
            moves.append(press("Down", "§3.1 ResNet18 from scratch, ImageNet stem", args.pause))
            moves.append(press("Up", "embedded CIFAR-10 sample", args.pause))
        print(f"{args.pause:g} s between presses")
        report("run -> catalog (Esc)", to_catalog)
        report("catalog -> live run (v)", to_run)
        report("cursor moves in the catalog (Down / Up)", moves)
        print(
            f"live run watched for {args.watch:g} s: the plots changed {plots} times "
            f"({plots / args.watch:.2f}/s) while {steps} new steps were reported on screen"
        )
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
