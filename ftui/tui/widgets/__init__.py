"""Widgets of the experiment editor, one per file, each talking to its screen through messages."""
