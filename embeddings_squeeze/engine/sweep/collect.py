"""The collect step: the tables, the plot and the report from every result that exists (rows of jobs
that failed or never ended are named with why), with every interval computed from the saved
per-image statistics. Loads no model."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict

from embeddings_squeeze.console import one_line
from embeddings_squeeze.engine.sweep.runner import Sweep
from embeddings_squeeze.engine.sweep.spec import FIGURES, SPLIT, Job
from embeddings_squeeze.models.quantizers import quantizer_class, run_label
from embeddings_squeeze.utils.columns import Kind
from embeddings_squeeze.utils.files import shown
from embeddings_squeeze.utils.rate_plot import plot_rate_quality
from embeddings_squeeze.utils.sweep_report import (
    SweepTables,
    rate_at_quality,
    sentences,
    write_report,
    write_tables,
)
from embeddings_squeeze.utils.sweep_statistics import adjust, seed_means, with_intervals

log = logging.getLogger(__name__)


def collect(sweep: Sweep, jobs: list[Job], ended: dict[str, str] | None = None) -> list[dict]:
    """The tables, the plot and the report from every result that exists; rows without one are
    marked failed (with the job's reason) or missing (with ``ended``: how a launcher saw its job
    end, e.g. killed). Loads no model."""
    ended = ended or {}
    measured, unmeasured = [], []
    for job in jobs:
        for name in job.rows:
            path = sweep.results / f"{name}.json"
            if path.is_file():
                measured.append(json.loads(path.read_text()))
                continue
            record = sweep.failure_record(job.name)
            failed = record.is_file()
            reason = json.loads(record.read_text())["reason"] if failed else ended.get(job.name, "not run")
            configuration, _, seed = name.rpartition("_seed")
            kind = Kind.FAILED if failed else Kind.MISSING
            unmeasured.append({"name": name, "kind": kind, "configuration": configuration,
                               "seed": int(seed), "reason": reason})  # fmt: skip
    baselines = [row["seed"] for row in measured if row["kind"] == Kind.BASELINE]
    floor_rows = [row for seed in baselines for row in sweep.floor_rows(seed)]
    rows = [*measured, *floor_rows]
    statistics = sweep.statistics(rows)
    rows = with_intervals(rows, statistics, sweep.metrics, sweep.reference_of)
    aggregates = seed_means(rows, statistics, sweep.metrics, sweep.reference_of)
    rule = adjust(rows + aggregates)
    methods = rate_at_quality(rows)
    tables = SweepTables(rows, unmeasured, aggregates, methods, sentences(rows, aggregates, rule))
    write_tables(sweep.output_dir, tables)
    for line in tables.sentences:
        log.info("%s", line)
    for row in unmeasured:
        log.warning("%s: %s, %s", row["name"], row["kind"], row["reason"])
    _plot_and_report(sweep, tables)
    written = ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
    log.info("wrote %s", ", ".join(shown(sweep.output_dir / n) for n in written))
    return rows + unmeasured


def shown_model(sweep: Sweep, rows: list[dict]) -> tuple[str | None, str]:
    """The model whose figures the report shows, and what its captions add: the first of
    ``spec.figure_models`` with figures whose predictions are not degenerate, naming the preferred ones
    passed over; when every one is degenerate, the first, with its warning (None: none has figures)."""
    reasons = {row["name"]: row.get("degenerate") for row in rows}
    drawn = [name for name in sweep.spec.figure_models() if (sweep.figures_of(name) / "index.html").is_file()]
    sound = [name for name in drawn if not reasons.get(name)]
    if sound:
        passed = [f"{name}, which {reasons[name]}" for name in drawn[: drawn.index(sound[0])]]
        return sound[0], f" (shown instead of {'; '.join(passed)})" if passed else ""
    if drawn:
        return drawn[0], f" (warning: it {reasons.get(drawn[0])}, as every model with figures does)"
    return None, ""


def _plot_and_report(sweep: Sweep, tables: SweepTables) -> None:
    spec, model, data = sweep.spec, sweep.plan.model, sweep.datamodule
    masks = f", {data.hparams.mask_mode} masks" if data.hparams.mask_mode else ""
    title = f"{model.backbone} ({model.weights} weights), {data.title} {SPLIT}{masks}"
    names = {q.quantizer_type: quantizer_class(q.quantizer_type).title or q.quantizer_type.upper()
             for q in spec.quantizers}  # fmt: skip
    names.update({run_label(r): f"continuous reference {run_label(r)}" for r in spec.references()})
    plot = sweep.output_dir / "rate_quality.png"
    try:
        plot_rate_quality(tables.rows, tables.aggregates, title, plot, names)
    except Exception as error:  # the tables are written: a figure that cannot be drawn is a warning
        log.warning(
            "warning: rate_quality.png not drawn (%s: %s)", type(error).__name__, one_line(str(error))
        )
        plot.unlink(missing_ok=True)
    report_figures = [(sweep.output_dir / "rate_quality.png", "mIoU against measured bytes per image")]
    report_settings = dict(spec.settings)  # the flags, then what the runs used ('auto' resolved) ...
    for config in (sweep.plan.model, sweep.plan.data, sweep.plan.optimizer, sweep.plan.training):
        report_settings.update(asdict(config))
    # ... but the sweep's own folder, not the runs' inside it
    report_settings["output_dir"] = spec.settings.get("output_dir", report_settings["output_dir"])
    report_settings = {key: _as_typed(value) for key, value in report_settings.items()}
    run_pages = []
    shown, note = shown_model(sweep, tables.rows)
    if shown is not None:
        captions = ("best images by VQ IoU", "worst images by VQ IoU", "where VQ loses most to the baseline")
        folder = sweep.figures_of(shown)
        report_figures += [
            (folder / path, f"{shown}: {caption}{note}") for path, caption in zip(FIGURES, captions)
        ]
        page = (folder / "index.html").relative_to(sweep.output_dir).as_posix()
        run_pages = [(page, f"{shown}: every image's scores, on a page of its own")]
    write_report(sweep.output_dir / "report.html", f"Rate-quality sweep: {title}", report_settings, tables,
                 report_figures, run_pages)  # fmt: skip


def _as_typed(value):
    """A setting as a flag takes it: a list of values space-separated, not a Python tuple."""
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else value
