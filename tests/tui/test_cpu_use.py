"""The run screen's view of the training process: its CPU use from /proc and its GPU memory from its reports."""

from __future__ import annotations

import os
import socket

from ftui.engine import events as ev
from ftui.tui import cpu_use
from ftui.tui.cpu_use import CpuMeter, cpu_seconds
from ftui.tui.screens.run import RunScreen


def test_cpu_seconds_of_a_process_and_of_none():
    assert cpu_seconds(os.getpid()) > 0
    assert cpu_seconds(2**22 + 12345) is None  # no such process


def test_the_meter_gives_the_share_of_a_core_between_readings(monkeypatch):
    clock, used = [100.0], [5.0]
    monkeypatch.setattr(cpu_use.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(cpu_use, "cpu_seconds", lambda pid: used[0] if pid == 42 else None)
    meter = CpuMeter()
    assert meter.read(42) is None  # one reading is no rate
    clock[0], used[0] = 101.0, 6.5
    assert meter.read(42) == 150.0  # 1.5 s of CPU in 1 s: one and a half cores
    clock[0], used[0] = 101.1, 6.6
    assert meter.read(42) == 150.0  # too soon to measure again: the last figure stands
    assert meter.read(7) is None and meter.read(None) is None  # another process, or none: start again


def test_the_run_screen_names_cpu_use_and_gpu_memory_of_the_training_process(monkeypatch):
    screen = RunScreen()
    screen.status = {"pid": 42, "host": socket.gethostname()}
    monkeypatch.setattr(screen.cpu, "read", lambda pid: 187.4 if pid == 42 else None)
    screen.history.feed([ev.Step(0, 0, 0, (2.0,), 0.1, 50.0, memory=3 * 2**30 + 2**29)])
    assert screen._device_use() == ["CPU 187%", "GPU mem 3.5 GiB"]
    screen.status = {"pid": 42, "host": "another-machine"}  # its /proc is not ours
    screen.history.feed([ev.Step(0, 1, 1, (2.0,), 0.1, 50.0)])  # a CPU run reports no memory
    assert screen._device_use() == []
