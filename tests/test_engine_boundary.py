"""The engine never imports Textual: the CLI and the tests use it with no UI at all."""

import pkgutil
import subprocess
import sys

import ftui.engine


def test_no_engine_module_imports_textual():
    modules = sorted(f"ftui.engine.{m.name}" for m in pkgutil.iter_modules(ftui.engine.__path__))
    assert {"ftui.engine.train", "ftui.engine.validation", "ftui.engine.model_facts"} <= set(modules)
    code = (
        "import importlib, sys\n"
        f"for name in {[*modules, 'ftui.progress', 'ftui.formatting']!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'plotext'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
