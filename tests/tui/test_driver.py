"""The input loop of ftui's terminal driver: Esc goes through once ESCDELAY has passed, sequences stay whole."""

import os
import subprocess
import sys
import time

from textual import constants, events

from ftui.tui.app import make_app
from ftui.tui.driver import ESC_WAIT, IDLE_WAIT, InputLoop, PromptEscapeDriver


def keys_after(data: bytes, seconds: float) -> tuple[list[str], float]:
    """Feed data, tick the loop as the driver does, and return the keys seen and when the last came."""
    got: list[str] = []
    loop = InputLoop(lambda e: got.append(e.key) if isinstance(e, events.Key) else None)
    start = time.monotonic()
    loop.feed(data)
    last = 0.0
    while time.monotonic() - start < seconds:
        time.sleep(loop.wait())
        before = len(got)
        loop.tick()
        if len(got) > before:
            last = time.monotonic() - start
    return got, last


def test_a_lone_escape_is_sent_soon_after_the_escape_delay():
    keys, when = keys_after(b"\x1b", constants.ESCAPE_DELAY + 0.2)
    assert keys == ["escape"]
    # Textual's own loop only looked every 100 ms, so this could take ESCAPE_DELAY + 100 ms.
    assert when < constants.ESCAPE_DELAY + 0.05


def test_an_arrow_key_sequence_is_one_key_not_an_escape():
    keys, _ = keys_after(b"\x1b[A", constants.ESCAPE_DELAY + 0.05)
    assert keys == ["up"]


def test_plain_keys_need_no_wait_and_the_loop_idles_slowly():
    got = []
    loop = InputLoop(lambda e: got.append(e.key) if isinstance(e, events.Key) else None)
    loop.feed(b"v")
    assert got == ["v"]
    assert loop.wait() == IDLE_WAIT
    loop.feed(b"\x1b")
    assert loop.wait() == ESC_WAIT  # an ESC is pending: look at the clock often


def escape_delay_in_fresh_process(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ESCDELAY"}
    if env_value is not None:
        env["ESCDELAY"] = env_value
    code = "import ftui.tui.app; from textual import constants; print(constants.ESCAPE_DELAY)"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_escdelay_is_25ms_unless_the_user_set_one():
    # In a fresh process: under pytest, textual is imported by its plugin before ftui.tui.
    assert escape_delay_in_fresh_process(None) == "0.025"
    assert escape_delay_in_fresh_process("300") == "0.3"


def test_the_workbench_uses_it_in_a_real_terminal(tmp_path, monkeypatch):
    app = make_app(tmp_path / "none.toml", tmp_path / "runs")
    assert app.driver_class is PromptEscapeDriver
    monkeypatch.setattr(constants, "DRIVER", "textual.drivers.headless_driver:HeadlessDriver")
    assert app.get_driver_class().__name__ == "HeadlessDriver"  # TEXTUAL_DRIVER still wins
