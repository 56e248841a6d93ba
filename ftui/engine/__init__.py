"""The headless engine: catalog, models, data, training, checkpoints.

Nothing under ftui.engine imports Textual; the CLI, the TUI and the tests all
drive the same ``train`` function.
"""
