"""How long ftui takes to start (not a test): `ftui list`, and the workbench until the catalog is on screen.

Three figures, each the median of --runs fresh processes, alternated round by round so that
machine noise falls on all of them alike:

- `import torch, torchvision` alone: the floor any command that trains pays;
- `ftui list` on the shipped catalog, to its exit;
- the workbench in tmux (80x24) from start until the catalog's first experiment is on the
  terminal, polling `tmux capture-pane` every 10 ms (tmux's own round trip is included).

    .venv/bin/python bench/startup.py [--runs 5] [--catalog experiments.toml]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SESSION = "ftui-bench-startup"


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    return time.perf_counter() - start


def first_experiment(catalog: Path) -> str:
    for line in catalog.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("name"):
            return line.split("=", 1)[1].strip().strip('"')
    raise SystemExit(f"{catalog} names no experiment")


def workbench_until(text: str, catalog: Path, timeout: float = 120.0) -> float:
    command = f"cd {REPO} && exec {sys.executable} -m ftui --catalog {catalog}"
    start = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", command], check=True)
    try:
        while time.perf_counter() - start < timeout:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", SESSION], capture_output=True, text=True)
            if text in screen.stdout:
                return time.perf_counter() - start
            time.sleep(0.01)
        raise TimeoutError(f"{text!r} never appeared on the workbench")
    finally:
        quit_workbench()


def quit_workbench(timeout: float = 30.0) -> None:
    """Ctrl-Q, then the session once the workbench has exited: killing the session while the workbench
    still runs hangs it up (SIGHUP), and a workbench hung up while it draws can be left behind."""
    subprocess.run(["tmux", "send-keys", "-t", SESSION, "C-q"], capture_output=True, check=False)
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        alive = subprocess.run(
            ["tmux", "list-panes", "-t", SESSION, "-F", "#{pane_dead}"], capture_output=True, text=True
        )
        if alive.returncode != 0 or alive.stdout.strip() == "1":
            break
        time.sleep(0.05)
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--catalog", type=Path, default=REPO / "experiments.toml")
    args = parser.parse_args(argv)
    catalog = args.catalog.resolve()
    name = first_experiment(catalog)
    figures: dict[str, list[float]] = {"import torch, torchvision": [], "ftui list": [], "workbench: catalog shown": []}
    for _ in range(args.runs):
        figures["import torch, torchvision"].append(timed([sys.executable, "-c", "import torch, torchvision"]))
        figures["ftui list"].append(timed([sys.executable, "-m", "ftui", "list", "--catalog", str(catalog)]))
        if shutil.which("tmux"):
            figures["workbench: catalog shown"].append(workbench_until(name, catalog))
    for what, seconds in figures.items():
        if seconds:
            shown = ", ".join(f"{s:.2f}" for s in seconds)
            print(f"{what:28s} median {statistics.median(seconds):5.2f} s   ({shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
