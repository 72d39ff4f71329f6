"""HTML fragments of the report page and the standalone page around them.

Every figure is embedded as a base64 PNG, so the page needs no files beside it; all text taken
from records (image ids, errors, warnings, captions) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = ("body{font-family:sans-serif;max-width:1300px;margin:auto;padding:1em}img{max-width:100%}"
         "figcaption{font-size:0.9em;color:#444}.tbl{border-collapse:collapse;font-size:0.85em}"
         ".tbl td,.tbl th{border:1px solid #ccc;padding:2px 6px}.err{color:#b00}")


def img_tag(path: str | Path, caption: str) -> str:
    """A <figure> holding the PNG at path (embedded) and its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def error_paragraph(text: str) -> str:
    """A paragraph in the error style (red)."""
    return f'<p class="err">{html.escape(text)}</p>'


def page(parts: list[str]) -> str:
    """The standalone HTML page holding the fragments in order."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>vdwstack report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
