"""Model facts are computed once per torchvision release and read back without importing torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftui.engine import model_facts
from ftui.engine.models import compute_model_info

REPO = Path(__file__).resolve().parents[1]
CACHED = (
    model_facts._cache,
    model_facts._cache_file,
    model_facts.describe,
    model_facts.classification_models,
    model_facts.weight_names,
)


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """model_facts as in a new process, with its facts file in tmp_path."""
    monkeypatch.setenv("FTUI_CACHE_DIR", str(tmp_path))
    for f in CACHED:
        f.cache_clear()
    yield tmp_path
    for f in CACHED:
        f.cache_clear()


@pytest.mark.parametrize(
    ("name", "stem", "classes"), [("resnet18", True, 10), ("vgg16", False, 10), ("vit_b_16", False, 5)]
)
def test_the_facts_read_back_equal_what_the_model_says(fresh, name, stem, classes):
    computed = compute_model_info(name, stem, classes)
    assert model_facts.describe(name, stem, classes) == computed  # computed and written
    model_facts._cache.cache_clear()
    model_facts.describe.cache_clear()
    assert model_facts.describe(name, stem, classes) == computed  # read from the file


def test_a_damaged_facts_file_is_computed_again_not_trusted(fresh):
    model_facts.describe("resnet18")
    file = model_facts._cache_file()
    data = json.loads(file.read_text())
    key = next(iter(data["models"]))
    data["models"][key]["units"] = [{"name": 5, "prefixes": "conv1", "params": "many"}]
    data["weights"] = {"resnet18": "DEFAULT"}
    file.write_text(json.dumps(data))
    for f in CACHED[2:] + (model_facts._cache,):
        f.cache_clear()
    assert model_facts.describe("resnet18") == compute_model_info("resnet18")
    assert model_facts.weight_names("resnet18")[0] == "DEFAULT" and len(model_facts.weight_names("resnet18")) > 1
    file.write_text("{ not json")
    model_facts._cache.cache_clear()
    model_facts.describe.cache_clear()
    assert model_facts.describe("resnet18") == compute_model_info("resnet18")


def test_a_facts_path_that_cannot_be_written_still_answers(fresh, monkeypatch):
    blocker = fresh / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("FTUI_CACHE_DIR", str(blocker))
    model_facts._cache_file.cache_clear()
    assert model_facts.describe("resnet18").unit_names[0] == "conv1"


def test_ftui_list_imports_no_torch_once_the_facts_are_known(fresh):
    env = {**os.environ, "FTUI_CACHE_DIR": str(fresh), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    listing = [sys.executable, "-m", "ftui", "list", "--catalog", str(REPO / "experiments.toml")]
    first = subprocess.run(listing, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    probe = (
        "import runpy, sys\n"
        f"sys.argv = {['ftui', *listing[3:]]!r}\n"
        "try:\n    runpy.run_module('ftui', run_name='__main__')\n"
        "except SystemExit as done:\n    assert done.code == 0, done.code\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'textual') if m in sys.modules)\n"
        "print('HEAVY', heavy)\n"
    )
    second = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout + "HEAVY []\n"  # the same listing, with no torch, torchvision or textual
