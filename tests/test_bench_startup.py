"""bench/startup.py finds what to wait for on the workbench from the catalog it is given."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_startup():
    spec = importlib.util.spec_from_file_location("bench_startup", REPO / "bench" / "startup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_first_experiment_of_the_shipped_catalog():
    startup = load_startup()
    assert startup.first_experiment(REPO / "experiments.toml") == "quickstart"


def test_a_catalog_without_experiments_is_named(tmp_path):
    empty = tmp_path / "experiments.toml"
    empty.write_text("[defaults]\n")
    with pytest.raises(SystemExit, match="names no experiment"):
        load_startup().first_experiment(empty)
