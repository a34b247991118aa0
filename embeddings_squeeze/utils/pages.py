"""Self-contained HTML pages (figures embedded, plain JavaScript, no network), rendered from the
Jinja2 templates in ``templates/``: visualize's ``index.html`` (``comparison_page``) and the sweep's
report (``utils/sweep_report.py``) share the page, its tables and its figures.

Every table sits in a box that scrolls sideways, so a page is never wider than the window; a table
made ``sortable`` sorts by a column when its header is clicked (numbers as numbers, empty cells last).
"""

from __future__ import annotations

import base64
from pathlib import Path

import jinja2

from embeddings_squeeze.config import CHECKPOINT_FLAGS
from embeddings_squeeze.utils.records import ComparisonReport


def cell(value) -> str:
    """A table cell's text: empty for nothing or NaN (a class in neither map), yes/no, 4 digits."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else ("yes" if value else "no")
    if isinstance(value, float):
        return "" if value != value else f"{value:.4g}"
    if isinstance(value, list):
        return "[" + ", ".join(cell(item) for item in value) + "]"
    return str(value)


def embedded(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("embeddings_squeeze.utils"),
    autoescape=True,  # every value is text to show, never markup
    undefined=jinja2.StrictUndefined,  # a misspelt name fails, not renders empty
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(cell=cell, base64=embedded)


def render(template: str, title: str, **context) -> str:
    """A whole page: ``template`` under its title, with the sorting script."""
    return TEMPLATES.get_template(template).render(title=title, **context)


def comparison_page(
    report: ComparisonReport, folder: Path, figures: list[str], images: list[dict], fields: list[str]
) -> str:
    """index.html: the comparison on one page: its scores with their intervals and verdicts, the rate,
    the figures (their names under ``folder``), every image's scores (``images``, columns ``fields``)
    in a table that sorts, the settings last."""
    result = report.result
    scores = []
    for metric in result.models["baseline"].metrics:
        key = metric.key
        row = {"metric": key, **{role: model[key].text() for role, model in result.models.items()}}
        row["VQ - baseline"] = result.difference("squeezed", "baseline", key).text()
        scores.append(row)
    flags = {role: CHECKPOINT_FLAGS[role].removeprefix("--") for role in report.checkpoints}
    return render(
        "comparison.html",
        f"Baseline and VQ model on the {report.split} split",
        report=report,
        result=result,
        rate=report.rate,
        scores=scores,
        columns=["metric", *result.models, "VQ - baseline"],
        figures=[(folder / name, name.removesuffix(".png").replace("_", " ")) for name in figures],
        images=images,
        fields=fields,
        settings=[{"setting": flags[role], "value": path} for role, path in report.checkpoints.items()],
    )
