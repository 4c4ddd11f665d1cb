"""Terminal lines built from user text: printed literally, never read as rich markup.

Paths, messages and install hints can hold square brackets (`out/res[1]`, `pip install 'helix4d[app]'`), which
rich would take for markup: it drops them from what it prints, or raises `MarkupError` (once after a whole result
was written). Only the styled label of a line is ours; the text after it goes in as plain text.
"""

from __future__ import annotations

from rich.text import Text


def labelled(label: str, style: str, text: str) -> Text:
    """'label text' with only `label` styled (e.g. labelled("error:", "bold red", str(exc)))."""
    return Text.assemble((label, style), " ", text)
