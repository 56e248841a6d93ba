"""The one atomic writer: a file is either the old one or the new one, never half, never a stray temporary."""

from __future__ import annotations

import os
import stat

import pytest

from ftui.engine.atomic import atomic_write, atomic_write_text


def test_replaces_the_file_with_the_mode_a_new_file_gets(tmp_path):
    path = tmp_path / "status.json"
    path.write_text("old")
    atomic_write_text(path, "new")
    umask = os.umask(0)
    os.umask(umask)
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.safetensors"
    path.write_text("the previous checkpoint")

    def half_then_disk_full(tmp):
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half_then_disk_full)
    assert path.read_text() == "the previous checkpoint"
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_a_failed_check_keeps_the_old_file(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text("good")

    def reads_back(tmp):
        assert tmp.read_text() == "bad" and tmp.name.startswith(".experiments.toml.") and tmp.name.endswith(".tmp")
        raise ValueError("does not read back")

    with pytest.raises(ValueError):
        atomic_write_text(path, "bad", mode=0o640, check=reads_back)
    assert path.read_text() == "good" and len(list(tmp_path.iterdir())) == 1


def test_mode_and_newlines_as_asked(tmp_path):
    path = tmp_path / "results.csv"
    atomic_write_text(path, "a,b\r\n", newline="", mode=0o640)
    assert path.read_bytes() == b"a,b\r\n" and stat.S_IMODE(path.stat().st_mode) == 0o640
