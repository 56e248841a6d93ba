"""bench/gpu_check.py, the GPU check: its CPU mode end to end, and how it judges and reports what it finds."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_bench_scripts import REPO, load_script


@pytest.fixture(scope="module")
def check():
    return load_script("gpu_check")


def test_the_dry_run_gives_every_section_a_result(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "gpu_check.py"), "--dry-run", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = {s["name"]: s for s in report["sections"]}
    assert list(sections) == ["tests", "throughput", "workbench", "finetune"]
    assert report["passed"] and report["mode"] == "dry run (CPU)" and report["machine"]["device"] == "cpu"

    tests = sections["tests"]
    assert (tests["status"], tests["reason"]) == (
        "skipped",
        f"skipped: no CUDA ({len(tests['figures']['tests'])} tests)",
    )
    names = [t["test"] for t in tests["figures"]["tests"]]
    assert "tests/cuda/test_torch_compile.py::test_compile_trains_as_the_eager_run_does" in names
    assert {t["outcome"] for t in tests["figures"]["tests"]} == {"skipped"}

    assert all(sections[name]["status"] == "passed" for name in ("throughput", "workbench", "finetune"))
    rows = sections["throughput"]["figures"]["rows"]
    assert [(r["model"], r["size"]) for r in rows] == [("resnet18", 48), ("resnet18", 32)]
    assert all(r[loop] > 0 for r in rows for loop in ("seed", "ftui", "bare", "gflops_per_image"))
    workbench = sections["workbench"]["figures"]
    assert workbench["cli"]["images_per_sec"] > 0 and workbench["workbench"]["images_per_sec"] > 0
    assert len(workbench["cli"]["epochs"]) == len(workbench["workbench"]["epochs"]) == 2
    finetune = sections["finetune"]
    assert finetune["figures"]["cpu_run"]["status"] == finetune["figures"]["finetune"]["status"] == "finished"
    assert len(finetune["checks"]) == 3 and all(c["passed"] for c in finetune["checks"])
    assert not any(s.get("targets") for s in report["sections"])  # issue 14's targets are judged on a GPU only

    summary = (tmp_path / "gpu_check.md").read_text()
    for heading in ("1. CUDA tests: skipped", "2. Throughput: passed", "3. Workbench vs CLI: passed"):
        assert f"## {heading}" in summary
    assert "## 4. Fine-tune from a CPU run's weights: passed" in summary
    assert "gpu_check_sections.py finetune" in (tmp_path / "gpu_check.log").read_text()


def test_a_section_past_its_budget_is_stopped_with_all_it_started(check, tmp_path):
    # The child starts a grandchild (as a section starts `ftui run` or DataLoader workers), then hangs.
    child = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "print(p.pid, flush=True); time.sleep(600)"
    )
    with open(tmp_path / "log", "w") as log:
        code, _seconds, tail = check.run_child([sys.executable, "-c", child], 2, log, check.child_env(dry_run=True))
    assert code is None
    grandchild = Path(f"/proc/{int(tail.split()[0])}/status")
    deadline = time.monotonic() + 30  # SIGKILL takes effect once the process is scheduled again
    while grandchild.exists() and "\nState:\tZ" not in grandchild.read_text():  # gone, or dead awaiting its reaper
        assert time.monotonic() < deadline, "the section's grandchild outlived it"
        time.sleep(0.05)
    assert "exit status None" in (tmp_path / "log").read_text()


def test_a_failed_section_is_recorded_and_the_next_one_still_runs(check, tmp_path, monkeypatch):
    ran = []

    def measuring(name, scratch, dry_run, log):  # stands in for a section's child process
        ran.append(name)
        failed = name == "throughput"
        reason = "RuntimeError: boom" if failed else ""
        return check.section(name, "failed" if failed else "passed", reason, 1.0, 150, "the tail", figures={})

    monkeypatch.setattr(check, "run_measuring", measuring)
    assert check.main(["--out", str(tmp_path), "--sections", "throughput,finetune"]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert ran == ["throughput", "finetune"]
    assert [(s["name"], s["status"]) for s in report["sections"]] == [("throughput", "failed"), ("finetune", "passed")]
    assert not report["passed"]
    assert "| 1. Throughput | failed | 1.0 s | 150 s | RuntimeError: boom |" in (tmp_path / "gpu_check.md").read_text()


def lines(*outcomes: tuple[str, str, str]) -> list[dict]:
    """gpu_check_pytest's lines for tests with these (name, phase, outcome); outcome None: started only."""
    out = []
    for name, phase, outcome in outcomes:
        out.append({"test": name, "phase": "start"})
        if outcome:
            out.append({"test": name, "phase": phase, "outcome": outcome, "seconds": 1.5, "message": f"{name} says"})
    return out


def test_the_cuda_tests_are_judged_as_a_gpu_needs_them(check):
    skipped = lines(("a", "setup", "skipped"), ("b", "setup", "skipped"))
    tests, running = check.fold_test_lines(skipped)
    assert running is None and [t["outcome"] for t in tests] == ["skipped", "skipped"]
    assert check.judge_tests(0, tests, running, True, 300) == ("skipped", "skipped: a says; b says (2 tests)")
    assert check.judge_tests(0, tests, running, False, 180)[0] == "failed"  # on a GPU, nothing was proven

    # A call that passed and a teardown that failed: the test failed.
    tests, _ = check.fold_test_lines(
        lines(("a", "call", "passed"), ("a", "teardown", "failed"), ("b", "call", "passed"))
    )
    assert [(t["test"], t["outcome"], t["seconds"]) for t in tests] == [("a", "failed", 3.0), ("b", "passed", 1.5)]
    assert check.judge_tests(1, tests, None, False, 180) == ("failed", "1 passed, 1 failed")

    # The stop came in slow's call, after its setup had passed.
    tests, running = check.fold_test_lines(lines(("a", "call", "passed"), ("slow", "setup", "passed")))
    status, reason = check.judge_tests(None, tests, running, False, 180)
    assert status == "timed out" and "in slow; before it: 1 passed" in reason
    assert check.judge_tests(5, [], None, False, 180) == ("failed", "pytest collected no CUDA test (exit status 5)")


def test_a_measuring_section_is_judged_on_its_checks_its_error_and_its_end(check):
    passed = {"figures": {"rows": []}, "checks": [{"what": "ran", "passed": True}], "error": ""}
    assert check.judge_measuring(0, passed, 150) == ("passed", "")
    assert check.judge_measuring(None, passed, 150) == (
        "timed out",
        "stopped at its budget of 150 s; the figures are those it had",
    )
    assert check.judge_measuring(1, {**passed, "error": "RuntimeError: boom"}, 55) == (
        "failed",
        "RuntimeError: boom",
    )
    failed = {**passed, "checks": [{"what": "the fine-tune finished", "passed": False}]}
    assert check.judge_measuring(1, failed, 55) == ("failed", "the fine-tune finished")
    assert check.judge_measuring(-9, {}, 70) == ("failed", "exited with status -9")


def test_the_targets_of_issue_14_are_judged_on_the_rows_at_224(check):
    sections = importlib.import_module("gpu_check_sections")  # bench/ is on sys.path once gpu_check is loaded
    rows = [
        {"model": "resnet18", "size": 224, "ftui": 15_000.0, "ftui_vs_seed": 2.5},
        {"model": "vit_b_16", "size": 224, "ftui": 2_000.0, "ftui_vs_seed": 4.0},
        {"model": "resnet18", "size": 32, "ftui": 9.0, "ftui_vs_seed": 1.0},  # no target at 32
        {"model": "vgg16", "size": 224, "batch": 128, "error": "OutOfMemoryError"},  # nothing measured
    ]
    judged = [(t["what"], t["met"]) for t in sections.throughput_targets(rows)]
    assert judged == [
        ("resnet18@224: ftui images/s", True),
        ("resnet18@224: ftui / the report's plain loop", False),
        ("vit_b_16@224: ftui images/s", False),
        ("vit_b_16@224: ftui / the report's plain loop", True),
    ]


def test_the_summary_says_why_a_section_failed_and_shows_the_end_of_its_output(check):
    report = {
        "check": "ftui GPU check",
        "mode": "cuda",
        "date": "2026-12-02",
        "budget_s": 480,
        "seconds": 200.0,
        "passed": False,
        "machine": {"device": "cuda", "device_name": "NVIDIA H200", "gpu_memory_gib": 139.8, "capability": "9.0"},
        "sections": [
            check.section(
                "workbench",
                "timed out",
                "stopped at its budget of 70 s",
                70.0,
                70,
                "Traceback...\nTimeoutError: slow | very",
                figures={},
                targets=[
                    {
                        "what": "a workbench run's images/s / the CLI's",
                        "wanted": ">= 95%",
                        "measured": 0.9,
                        "met": False,
                    }
                ],
            )
        ],
    }
    text = check.gpu_check_report.markdown(report)
    assert "| 1. Workbench vs CLI | timed out | 70.0 s | 70 s | stopped at its budget of 70 s |" in text
    assert "| a workbench run's images/s / the CLI's | >= 95% | 0.90 | **no** |" in text
    assert "TimeoutError: slow | very" in text.split("The end of its output:")[1]
    assert "NVIDIA H200 (139.8 GiB, compute capability 9.0)" in text


def test_without_an_output_folder_it_says_where_to_give_one(check, monkeypatch, capsys):
    monkeypatch.delenv("OUT", raising=False)
    with pytest.raises(SystemExit) as exit_:
        check.parse_args(["--dry-run"])
    assert exit_.value.code == 2 and "give --out DIR, or set OUT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        check.parse_args(["--out", "x", "--sections", "tests,nonesuch"])
    assert "nonesuch" in capsys.readouterr().err
