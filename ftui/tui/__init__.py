"""The Textual workbench. Nothing in ftui.engine imports from here."""

import os

# Read by textual when it is first imported, so it is set here, before any textual import.
# 25 ms instead of textual's 100 makes Esc answer sooner; driver.py says why that is safe.
os.environ.setdefault("ESCDELAY", "25")
