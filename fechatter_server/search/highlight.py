"""The ``highlight`` of a search hit: an HTML-safe snippet of the message with matches in ``<mark>``.

Format (the same for every engine): the message text, cut to a window around the first match with ``…``
where text was left out, HTML-escaped (``& < > " '``), with each match wrapped in ``<mark>`` and
``</mark>``. Those two tags are the only markup in it, so a client may insert it as HTML. A message that
matched without a literal occurrence (a filter-only query, or a stemmed word such as "studies" for
"study") gets the same snippet without marks.
"""

from __future__ import annotations

import html
import re

MARK_OPEN = "<mark>"
MARK_CLOSE = "</mark>"


def _spans(content: str, texts: tuple[str, ...]) -> list[tuple[int, int]]:
    found: list[tuple[int, int]] = []
    for text in texts:
        if text:
            found.extend(m.span() for m in re.finditer(re.escape(text), content, re.IGNORECASE))
    found.sort()
    merged: list[tuple[int, int]] = []
    for start, end in found:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def highlight(content: str, texts: tuple[str, ...], context: int) -> str:
    spans = _spans(content, texts)
    if spans:
        first_start, first_end = spans[0]
        start = max(0, first_start - context)
        end = min(len(content), max(first_end + context, start + 2 * context))
    else:
        start, end = 0, min(len(content), 2 * context)
    out: list[str] = ["…"] if start > 0 else []
    pos = start
    for span_start, span_end in spans:
        if span_start >= end:
            break
        span_end = min(span_end, end)
        out.append(html.escape(content[pos:span_start]))
        out.append(MARK_OPEN + html.escape(content[span_start:span_end]) + MARK_CLOSE)
        pos = span_end
    out.append(html.escape(content[pos:end]))
    if end < len(content):
        out.append("…")
    return "".join(out)


def marked_to_html(formatted: str, pre: str, post: str) -> str:
    """An engine's highlighted text, marked with the private tags ``pre``/``post``, as the format above:
    everything is escaped, then the private tags become ``<mark>``/``</mark>``."""
    out: list[str] = []
    rest = formatted
    while True:
        i = rest.find(pre)
        if i < 0:
            break
        j = rest.find(post, i + len(pre))
        if j < 0:
            break
        out.append(html.escape(rest[:i]))
        out.append(MARK_OPEN + html.escape(rest[i + len(pre) : j]) + MARK_CLOSE)
        rest = rest[j + len(post) :]
    out.append(html.escape(rest))
    return "".join(out)
