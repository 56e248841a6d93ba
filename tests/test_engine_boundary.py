"""The engine never imports Textual: the CLI and the tests use it with no UI at all."""

import subprocess
import sys


def test_engine_does_not_import_textual():
    code = (
        "import sys\n"
        "import ftui.engine.train, ftui.engine.catalog, ftui.engine.checkpoints, ftui.engine.evaluation, "
        "ftui.progress\n"
        "import ftui.engine.compare, ftui.engine.results, ftui.engine.history, ftui.engine.runs\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_plotext', 'plotext'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
