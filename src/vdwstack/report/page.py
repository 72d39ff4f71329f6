"""HTML fragments of the report page and the standalone page around them.

Every figure is embedded as a base64 PNG, so the page needs no files beside it; all text taken
from records (image ids, errors, warnings, captions) is HTML-escaped.

Layout: the page fits a 1400-px-wide window without horizontal scrolling. The body is at most
1320 px wide, images shrink to the page width (keeping their aspect ratio), text wraps long tokens
(file paths, ids) anywhere, table cells wrap between words and after "/" and "_", and a table with
more columns than fit scrolls sideways in its own box inside the page width.

Each image's final reading comes first; how it was reached (the network's value, candidates,
fitted optics, warnings) is folded in <details>.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

PAGE_MAX_WIDTH_PX = 1320  # below the 1400-px window the page is checked at, margins included

STYLE = (
    "*,*::before,*::after{box-sizing:border-box}"
    f"body{{font-family:sans-serif;max-width:{PAGE_MAX_WIDTH_PX}px;margin:0 auto;padding:0 16px 2em;"
    "line-height:1.4;overflow-wrap:anywhere}"
    "img{max-width:100%;height:auto;display:block}figure{margin:0.6em 0}"
    "figcaption{font-size:0.9em;color:#444}"
    ".scroll{max-width:100%;overflow-x:auto}"
    ".tbl{border-collapse:collapse;font-size:0.85em}"
    # Cells break between words only (never inside "material"); paths and ids get break points
    # after "/" and "_" (see table()), so a column is as narrow as its longest word.
    ".tbl td,.tbl th{border:1px solid #ccc;padding:2px 6px;vertical-align:top;overflow-wrap:break-word}"
    ".tbl th{text-align:left}"
    ".err{color:#b00}.warn{color:#8a5a00}"
    "section.image{border-top:2px solid #ddd;margin-top:1.4em}"
    ".final{background:#f3f7fb;border-left:4px solid #0072B2;padding:0.3em 0.9em;margin:0.5em 0}"
    ".reading{font-size:1.15em;margin:0.3em 0}.facts,.verdict{margin:0.2em 0}"
    ".task{display:inline-block;min-width:3.5em;color:#555;font-size:0.85em}"
    ".meta{font-weight:normal;color:#555;font-size:0.8em}"
    "details{margin:0.35em 0;padding:0.15em 0.6em;border:1px solid #e3e3e3;border-radius:4px}"
    "summary{cursor:pointer;font-weight:600}"
)


def img_tag(path: str | Path, caption: str) -> str:
    """A <figure> holding the PNG at path (embedded) and its caption."""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def error_paragraph(text: str) -> str:
    """A paragraph in the error style (red)."""
    return f'<p class="err">{html.escape(text)}</p>'


def _break_points(text: str) -> str:
    """HTML text with a word-break opportunity (<wbr>) after every "/" and "_" outside tags, so that
    file paths and long image ids wrap at their separators."""
    return re.sub(r">([^<]+)<", lambda m: ">" + re.sub(r"([/_])", r"\1<wbr>", m.group(1)) + "<", text)


def table(df: pd.DataFrame, **to_html) -> str:
    """A DataFrame as an HTML table (escaped, paths breakable) in a box that scrolls sideways inside
    the page width when the table has more columns than fit (the page itself never scrolls)."""
    kw = {"index": False, "na_rep": "", "classes": "tbl", "escape": True, "border": 0, **to_html}
    return f'<div class="scroll">{_break_points(df.to_html(**kw))}</div>'


def details(summary: str, parts: Sequence[str], summary_is_html: bool = False) -> str:
    """A folded <details> element: summary (escaped unless summary_is_html), then the parts."""
    head = summary if summary_is_html else html.escape(summary)
    return f"<details><summary>{head}</summary>{''.join(parts)}</details>"


def warning_list(warnings: Sequence[str]) -> str:
    """The warnings as a list (escaped)."""
    return '<ul class="warn">' + "".join(f"<li>{html.escape(str(w))}</li>" for w in warnings) + "</ul>"


def final_block(task: str, reading: str, facts: str, verdict: str, extra: Sequence[str] = (),
                note: str = "95 % interval") -> str:
    """One task's final reading, first and large (note: what its ± means), its hand, agreement and
    source on the next line, the verdict under them (text escaped; extra: HTML fragments such as a
    domain table)."""
    value = (f"<b>{html.escape(reading)}</b> <span class='meta'>({html.escape(note)})</span>" if reading
             else "<b>no reading</b>")
    return (f'<div class="final"><p class="reading"><span class="task">{html.escape(task)}</span> {value}</p>'
            f'<p class="facts">{html.escape(facts)}</p><p class="verdict">{html.escape(verdict)}</p>'
            f"{''.join(extra)}</div>")


def page(parts: list[str]) -> str:
    """The standalone HTML page holding the fragments in order."""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'><title>vdwstack report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>")
