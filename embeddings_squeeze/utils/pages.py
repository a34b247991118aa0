"""Self-contained HTML pages (figures embedded, plain JavaScript, no network): the sweep's report
and visualize's ``index.html`` share these pieces.

Every table sits in a box that scrolls sideways, so a page is never wider than the window; a table
made ``sortable`` sorts by a column when its header is clicked (numbers as numbers, empty cells last).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:1200px}"
    "table{border-collapse:collapse;font-size:12px}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
    "th.sortable{cursor:pointer;background:#f4f4f4}.scroll{overflow-x:auto;max-width:100%}"
    "figure{margin:1em 0}img{max-width:100%}"
)
# sorts the rows of the clicked header's table; a second click reverses the order
SORT_SCRIPT = """
document.querySelectorAll("th.sortable").forEach(function (header) {
  header.addEventListener("click", function () {
    var table = header.closest("table"), body = table.tBodies[0];
    var column = Array.prototype.indexOf.call(header.parentNode.children, header);
    var descending = header.dataset.order === "ascending";
    header.dataset.order = descending ? "descending" : "ascending";
    var key = function (row) {
      var text = row.children[column].textContent.trim(), number = Number(text);  // "2007_000032": text
      return text === "" ? null : (isNaN(number) ? text : number);
    };
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var order = x < y ? -1 : (x > y ? 1 : 0);
      return descending ? -order : order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img alt="{html.escape(path.name)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption></figure>"
    )


def cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"  # NaN: a class in neither map
    if isinstance(value, list):
        return "[" + ", ".join(cell(item) for item in value) + "]"
    return html.escape(str(value))


def table(rows: list[dict], columns: list[str], sortable: bool = False) -> str:
    kind = " class='sortable' title='click to sort'" if sortable else ""
    head = "".join(f"<th{kind}>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows
    )
    return f"<div class='scroll'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


def page(title: str, parts: list[str]) -> str:
    """A whole page: the parts under a heading, with the sorting script."""
    return "\n".join(
        [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            *parts,
            f"<script>{SORT_SCRIPT}</script></body></html>",
        ]
    )


def link(href: str, text: str) -> str:
    return f'<a href="{html.escape(href)}">{html.escape(text)}</a>'
