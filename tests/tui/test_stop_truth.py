"""What stopping keeps is said truthfully: in the first epoch nothing is saved, and nothing is offered to resume."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from ftui.engine import events as ev
from ftui.tui import workbench
from ftui.tui.run_controller import RunController


def controller_with(tmp_path, epochs_done: int | None) -> RunController:
    controller = RunController(tmp_path)
    if epochs_done is not None:
        controller.run_dir = tmp_path / "run"
        controller.run_dir.mkdir()
        status = {"state": "running", "epochs": 4, "epochs_done": epochs_done}
        (controller.run_dir / "status.json").write_text(json.dumps(status))
    return controller


@pytest.mark.parametrize("epochs_done", [None, 0])
def test_in_the_first_epoch_nothing_is_offered_to_resume(tmp_path, epochs_done):
    said = controller_with(tmp_path, epochs_done).what_stopping_keeps()
    assert "nothing is saved yet" in said and "resume" not in said


def test_after_an_epoch_the_saved_epoch_is_named(tmp_path):
    said = controller_with(tmp_path, 2).what_stopping_keeps()
    assert said == "its last completed epoch (2) stays saved, ready to resume"


@pytest.mark.parametrize(("epochs_done", "resumable"), [(0, False), (1, True)])
def test_what_is_printed_after_quitting_matches_what_was_saved(tmp_path, monkeypatch, epochs_done, resumable):
    said: list[str] = []
    monkeypatch.setattr(workbench, "_say", said.append)
    folder = tmp_path / "long-20261202-000000"
    result = ev.RunResult("stopped", folder, epochs_done=epochs_done, reason="because ftui was quit after x")
    controller = SimpleNamespace(
        experiment="long", busy=False, training=False, run_dir=folder, result=result, failure=None, wait=lambda: None
    )
    app = SimpleNamespace(controller=controller, stopped_run_on_exit=True, left_training=False, runs_root=tmp_path)
    workbench._see_the_run_out(app)
    text = " ".join(said)
    assert (f"ftui resume {folder}" in text) is resumable
    assert ("nothing was saved to resume" in text) is not resumable
