"""Memory of the workbench during a long run (not a test).

1. Starts `ftui` in tmux (80x24) on a small catalog whose one experiment runs
   many short epochs, launches it, opens nothing else, and samples the
   process's resident memory (VmRSS) every half second until the run ends:
   prints it early, at the peak and at the end.
2. Feeds the viewer's RunHistory ten million step losses and measures the
   Python memory it holds (tracemalloc): the curves kept for plotting are
   bounded, while the full log stays on disk.

    .venv/bin/python bench/memory.py [--epochs 60]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ftui.engine.events import Step  # noqa: E402
from ftui.engine.history import RunHistory  # noqa: E402

SESSION = "ftui-bench-memory"
CATALOG = """[[experiment]]
name = "long"
weights = "none"
dataset = "cifar10-sample"
input_size = 16
cifar_stem = true
batch_size = 8
max_steps_per_epoch = 50
max_test_images = 64
device = "cpu"
epochs = {epochs}
"""


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        return None
    return None


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True).stdout


def live_process(epochs: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="ftui-mem-"))
    (folder / "experiments.toml").write_text(CATALOG.format(epochs=epochs))
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24", f"cd {folder} && exec {sys.executable} -m ftui")
    pid = int(tmux("list-panes", "-t", SESSION, "-F", "#{pane_pid}").strip())
    while "long" not in tmux("capture-pane", "-p", "-t", SESSION):
        time.sleep(0.2)
    tmux("send-keys", "-t", SESSION, "l")
    samples, started = [], time.monotonic()
    try:
        while True:
            status = next(folder.glob("checkpoints/*/status.json"), None)
            state = json.loads(status.read_text()).get("state") if status else "starting"
            mib = rss_mib(pid)
            if mib is not None:
                samples.append((time.monotonic() - started, mib))
            if state not in ("running", "starting"):
                break
            time.sleep(0.5)
    finally:
        tmux("send-keys", "-t", SESSION, "C-q")
        time.sleep(1)
        tmux("kill-session", "-t", SESSION)
        shutil.rmtree(folder, ignore_errors=True)
    tenth = samples[len(samples) // 10][1]
    return {
        "epochs": epochs,
        "seconds": round(samples[-1][0], 1),
        "rss_at_10pct_mib": round(tenth, 1),
        "rss_peak_mib": round(max(m for _, m in samples), 1),
        "rss_end_mib": round(samples[-1][1], 1),
    }


def history_memory(steps: int = 10_000_000) -> dict:
    tracemalloc.start()
    history = RunHistory()
    batch = 1000
    for first in range(0, steps, batch):
        history.feed([Step(epoch=0, step=first, global_step=first, losses=(1.0,) * batch, lr=0.1, images_per_sec=1.0)])
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"steps": steps, "points_kept": len(history.loss), "history_kib": round(current / 1024, 1)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    print(json.dumps({"tui_run": live_process(args.epochs), "history": history_memory()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
