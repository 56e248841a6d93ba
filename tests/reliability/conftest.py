"""The workbench fixtures, for the fault tests that drive the TUI."""

from tests.tui.conftest import tui_catalog, tui_runs  # noqa: F401  (fixtures)
