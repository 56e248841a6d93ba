"""ftui's GPU check: every CUDA path, and the figures BENCHMARKS.md wants, in one run of at most 8 minutes.

    bash bench/gpu_check.sh [--out DIR] [--dry-run] [--sections tests,throughput,workbench,finetune]
    python bench/gpu_check.py ...   (the same, where ftui's dependencies are installed already)

Four sections, each in a process of its own with a time budget of its own (BUDGET_S); a section that
fails or outruns its budget is recorded as such, with what it had measured, and the next one starts:

  1. tests       - `pytest -m cuda tests/cuda`: bf16 autocast, channels_last, stop and resume, GPU
                   memory shown, out of memory, compile = true (skipped without CUDA)
  2. throughput  - bench/throughput.py's plain loop, ftui and the bare step for ResNet18, VGG16 and
                   ViT_B_16 at 224 and ResNet18 at 32, with the share of the GPU's peak bf16 FLOP/s
  3. workbench   - one recipe trained from the workbench and from `ftui run`, images/s side by side
  4. finetune    - a fine-tune at 224 from the weights of a short CPU run made just before

It writes DIR/gpu_check.json (every figure, every test, every pass and fail), DIR/gpu_check.md (the
same for a person) and DIR/gpu_check.log (all the sections printed), after every section. DIR is
--out, else $OUT. --dry-run is the CPU mode: tiny sizes, a step or two, under a minute; the CUDA tests
are then skipped. The exit status is 0 when every section passed (skipped ones in a dry run too).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
sys.path.insert(0, str(BENCH))

import gpu_check_report  # noqa: E402
from gpu_check_pytest import RESULTS  # noqa: E402

SECTIONS = ("tests", "throughput", "workbench", "finetune")
TITLES = {
    "tests": "CUDA tests",
    "throughput": "Throughput",
    "workbench": "Workbench vs CLI",
    "finetune": "Fine-tune from a CPU run's weights",
}
# Seconds each section may take on one H100/H200, its start-up (Python, torch, CUDA) included. Set
# from estimates, no GPU having run the check yet: the compile test should spend a minute or more in
# inductor, and throughput should fit 2 or 3 rounds of its 4 models (it starts a round only if it fits).
BUDGET_S = {"tests": 180, "throughput": 150, "workbench": 70, "finetune": 55}
SETUP_S = 25  # gpu_check.sh: finding Python and installing ftui's dependencies from wheels
TOTAL_BUDGET_S = 480  # issue 14: the whole check in at most 8 minutes
assert SETUP_S + sum(BUDGET_S.values()) <= TOTAL_BUDGET_S
# The dry run's sections take seconds, several times that on a busy 2-core machine: its bound only
# stops one that hangs.
DRY_RUN_BUDGET_S = 300
TAIL_CHARS = 4000  # of a section's output, kept in the report when it did not pass


def run_child(argv: list[str], budget: float, log, env: dict) -> tuple[int | None, float, str]:
    """Run argv from the repository root for at most `budget` seconds, its output appended to the log.

    Returns its exit status (None if it was stopped at its budget), its seconds, and its output's tail.
    The child leads a process group of its own, so that stopping it stops what it started too (the
    CLI's training, DataLoader workers).
    """
    started = time.monotonic()
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(
            argv, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        output.seek(0)
        text = output.read().decode("utf-8", errors="replace")
    seconds = round(time.monotonic() - started, 1)
    log.write(f"\n===== {' '.join(argv)}  ({seconds} s, exit status {code}) =====\n{text}")
    log.flush()
    return code, seconds, text[-TAIL_CHARS:]


def child_env(dry_run: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(BENCH), os.environ.get("PYTHONPATH", "")])}
    env["PYTHONUNBUFFERED"] = "1"
    if dry_run:
        env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU mode, on a GPU machine too
        # One compute thread: the dry run's steps are tiny, and on a busy machine OpenMP's threads wait
        # on each other's time slices (3 steps took 1 to 10 s with two threads, under 1 s with one).
        env["OMP_NUM_THREADS"] = "1"
    return env


def seconds_for(name: str, dry_run: bool) -> int:
    return DRY_RUN_BUDGET_S if dry_run else BUDGET_S[name]


# -- 1. the CUDA tests ---------------------------------------------------------------------------


def run_tests(scratch: Path, dry_run: bool, log) -> dict:
    results = scratch / "tests.jsonl"
    env = {**child_env(dry_run), RESULTS: str(results)}
    argv = [sys.executable, "-m", "pytest", "-m", "cuda", "tests/cuda", "-p", "gpu_check_pytest"]
    seconds_at_most = seconds_for("tests", dry_run)
    code, seconds, tail = run_child(argv + ["-p", "no:cacheprovider", "-q", "-rfEs"], seconds_at_most, log, env)
    lines = results.read_text().splitlines() if results.exists() else []
    tests, running = fold_test_lines([json.loads(line) for line in lines])
    status, reason = judge_tests(code, tests, running, dry_run, seconds_at_most)
    return section("tests", status, reason, seconds, seconds_at_most, tail, figures={"tests": tests})


def fold_test_lines(lines: list[dict]) -> tuple[list[dict], str | None]:
    """gpu_check_pytest's lines as one record a test, and the test that had started without an outcome
    (the one a stop at the budget interrupted), if any.

    A test's outcome is that of its first phase (setup, call, teardown) that failed or skipped, else
    "passed" once its call passed; its seconds are those of all its phases (a module's fixture that
    trains counts in its first test's setup).
    """
    tests: dict[str, dict] = {}
    for line in lines:
        test = tests.setdefault(line["test"], {"test": line["test"], "outcome": None, "seconds": 0.0, "message": ""})
        if line["phase"] == "start":
            continue
        test["seconds"] = round(test["seconds"] + line["seconds"], 2)
        if line["outcome"] != "passed" and test["outcome"] in (None, "passed"):
            test["outcome"], test["message"] = line["outcome"], line["message"]
        elif line["phase"] == "call" and test["outcome"] is None:
            test["outcome"] = "passed"
    running = next((name for name, t in tests.items() if t["outcome"] is None), None)
    return [t for t in tests.values() if t["outcome"] is not None], running


def judge_tests(
    code: int | None, tests: list[dict], running: str | None, dry_run: bool, seconds_at_most: int
) -> tuple[str, str]:
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "skipped")}
    said = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
    if code is None:
        return "timed out", f"stopped at its budget of {seconds_at_most} s, in {running}; before it: {said or 'none'}"
    if counts["failed"]:
        return "failed", said
    if not tests:
        return "failed", f"pytest collected no CUDA test (exit status {code})"
    if counts["skipped"] == len(tests):
        reasons = sorted({t["message"] for t in tests})
        return ("skipped" if dry_run else "failed"), f"skipped: {'; '.join(reasons)} ({len(tests)} tests)"
    if counts["skipped"] and not dry_run:  # on the GPU, a skipped test is a path not proven
        return "failed", said
    return ("passed" if code == 0 else "failed"), said


# -- 2 to 4: the measuring sections --------------------------------------------------------------


def run_measuring(name: str, scratch: Path, dry_run: bool, log) -> dict:
    result = scratch / f"{name}.json"
    argv = [sys.executable, str(BENCH / "gpu_check_sections.py"), name, "--result", str(result)]
    seconds_at_most = seconds_for(name, dry_run)
    argv += ["--budget", str(seconds_at_most)] + (["--dry-run"] if dry_run else [])
    code, seconds, tail = run_child(argv, seconds_at_most, log, child_env(dry_run))
    found = json.loads(result.read_text()) if result.exists() else {}
    status, reason = judge_measuring(code, found, seconds_at_most)
    return section(
        name,
        status,
        reason,
        seconds,
        seconds_at_most,
        tail,
        figures=found.get("figures", {}),
        checks=found.get("checks", []),
        targets=found.get("targets", []),
        machine=found.get("machine", {}),
    )


def judge_measuring(code: int | None, found: dict, seconds_at_most: int) -> tuple[str, str]:
    failed = [c["what"] for c in found.get("checks", []) if not c["passed"]]
    if code is None:
        return "timed out", f"stopped at its budget of {seconds_at_most} s; the figures are those it had"
    if found.get("error"):
        return "failed", found["error"]
    if failed:
        return "failed", "; ".join(failed)
    if code != 0 or not found:
        return "failed", f"exited with status {code}"
    return "passed", ""


def section(name: str, status: str, reason: str, seconds: float, budget_s: int, tail: str, **found) -> dict:
    record = {"name": name, "title": TITLES[name], "status": status, "reason": reason}
    record |= {"seconds": seconds, "budget_s": budget_s, **found}
    if status not in ("passed", "skipped"):
        record["output_tail"] = tail
    return record


# -- the report ------------------------------------------------------------------------------


def gpu_facts() -> dict:
    """The GPU as its driver names it (nvidia-smi), without importing torch here."""
    query = "name,memory.total,driver_version"
    try:
        proc = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"nvidia_smi": proc.stdout.strip()}


def write_report(out: Path, report: dict) -> None:
    for name, text in (
        ("gpu_check.json", json.dumps(report, indent=1, default=str)),
        ("gpu_check.md", gpu_check_report.markdown(report)),
    ):
        part = out / f".{name}.part"
        part.write_text(text, encoding="utf-8")
        os.replace(part, out / name)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for the results (default: $OUT)")
    parser.add_argument("--dry-run", action="store_true", help="the CPU mode: tiny sizes, under a minute")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"some of {','.join(SECTIONS)}")
    args = parser.parse_args(argv)
    if not args.out:
        parser.error("give --out DIR, or set OUT: the folder the results go to")
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown or not args.sections:
        parser.error(f"--sections: choose among {', '.join(SECTIONS)} (got {', '.join(unknown) or 'none'})")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    report = {
        "check": "ftui GPU check (bench/gpu_check.py)",
        "mode": "dry run (CPU)" if args.dry_run else "cuda",
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "budget_s": TOTAL_BUDGET_S,
        "machine": gpu_facts(),
        "sections": [],
    }
    with tempfile.TemporaryDirectory(prefix="ftui-gpu-check-") as scratch, open(out / "gpu_check.log", "w") as log:
        for name in args.sections:
            print(f"gpu check: {name} (at most {seconds_for(name, args.dry_run)} s)", flush=True)
            if name == "tests":
                record = run_tests(Path(scratch), args.dry_run, log)
            else:
                record = run_measuring(name, Path(scratch), args.dry_run, log)
            report["machine"] = {**record.pop("machine", {}), **report["machine"]}
            report["sections"].append(record)
            report["seconds"] = round(time.monotonic() - started, 1)
            report["passed"] = all(s["status"] in ("passed", "skipped") for s in report["sections"])
            write_report(out, report)
            print(f"gpu check: {name} {record['status']} in {record['seconds']} s {record['reason']}", flush=True)
    print(f"gpu check: {'passed' if report['passed'] else 'FAILED'}; results in {out}/gpu_check.md and .json")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
