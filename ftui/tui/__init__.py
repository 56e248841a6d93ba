"""The Textual workbench. Nothing in ftui.engine imports from here."""
