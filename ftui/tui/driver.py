"""A terminal driver that lets a lone Esc through as soon as it can be told apart.

A terminal sends Esc as the byte ESC, and arrow keys and the like as ESC
followed by more bytes, so an application must wait a moment after ESC before
it knows which it got. Textual waits ESCDELAY (100 ms by default), but its
input thread only looks at the clock when its 100 ms `select` returns, so a
lone Esc took 100 to 200 ms, and Esc is the key that goes back on every
screen. This driver waits in short slices while an ESC is pending, and
ftui/tui/__init__.py sets ESCDELAY to 25 ms unless the user set one. A
terminal writes an escape sequence in one go, so its bytes arrive together,
over SSH too: tmux 3.5 waits 10 ms (escape-time), fish 30 ms.

Only the input loop differs from Textual's LinuxDriver (textual is pinned in
pyproject.toml; tests/tui/test_driver.py checks this loop's behaviour).
"""

from __future__ import annotations

import os
import selectors
import time
from codecs import getincrementaldecoder

from textual import constants
from textual._parser import ParseError
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

ESC = "\x1b"
IDLE_WAIT = 0.1  # Textual's own: how often the loop checks for exit when no key comes
ESC_WAIT = 0.005  # while an ESC is pending, look at the clock this often


class InputLoop:
    """Decodes and parses terminal input; knows when a timeout may be pending."""

    def __init__(self, emit):
        self.parser = XTermParser()
        self.decode = getincrementaldecoder("utf-8")().decode
        self.emit = emit
        self.escape_until = 0.0  # until then a lone ESC may still be waiting to be sent

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self.decode(data, final=final)
        if ESC in text:
            self.escape_until = time.monotonic() + constants.ESCAPE_DELAY + ESC_WAIT
        for event in self.parser.feed(text):
            self.emit(event)

    def tick(self) -> None:
        for event in self.parser.tick():
            self.emit(event)

    def wait(self) -> float:
        return ESC_WAIT if time.monotonic() < self.escape_until else IDLE_WAIT

    def close(self) -> None:
        try:
            for _ in self.parser.feed(""):
                pass
        except (EOFError, ParseError):
            pass


class PromptEscapeDriver(LinuxDriver):
    def run_input_thread(self) -> None:
        selector = selectors.SelectSelector()
        selector.register(self.fileno, selectors.EVENT_READ)
        loop = InputLoop(self.process_message)

        def process(ready, final: bool = False) -> None:
            for _key, mask in ready:
                if mask & selectors.EVENT_READ:
                    data = os.read(self.fileno, 1024 * 4)
                    if not data:  # stdin is a pipe that closed
                        break
                    loop.feed(data, final=final)
            loop.tick()

        try:
            while not self.exit_event.is_set():
                process(selector.select(loop.wait()))
            selector.unregister(self.fileno)
            process(selector.select(IDLE_WAIT), final=True)
        finally:
            selector.close()
            loop.close()
