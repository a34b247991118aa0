"""The sweep's work: train what is missing, measure every row against its own seed's baseline, and
write the tables, the plot and the report (the ``sweep`` command's engine; see its docstring)."""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.evaluation import compare_models, evaluate_baseline, evaluate_input_compression
from embeddings_squeeze.engine.fitting import fit
from embeddings_squeeze.engine.run_dirs import finished_run
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.errors import Interrupted
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.models.quantizers import (
    QUANTIZERS,
    REFERENCE,
    quantizer_class,
    quantizer_config,
    quantizer_values,
    run_label,
)
from embeddings_squeeze.utils import bootstrap
from embeddings_squeeze.utils.columns import RATE_COLUMNS, Kind
from embeddings_squeeze.utils.comparison import degenerate
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.input_compression import codecs
from embeddings_squeeze.utils.sweep_report import plot_rate_quality, write_report, write_tables

log = logging.getLogger(__name__)
SPLIT = "test"
FIGURE_ROWS = 5
FIGURES = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")


@dataclass(frozen=True)
class Plan:
    """Everything every model of the sweep shares."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    training: TrainingConfig  # its seed is the first seed's; output_dir is <output_dir>/runs
    runtime: RuntimeConfig


def _finished(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _interval(column: str, bounds) -> dict:
    """``<column>_low`` and ``<column>_high`` of a 95 % interval (None where there is none)."""
    low, high = bounds if bounds is not None else (None, None)
    return {f"{column}_low": low, f"{column}_high": high}


def _paired_delta(confusions: torch.Tensor, baseline: torch.Tensor) -> dict:
    """delta_miou's interval and significance against the baseline's per-image counts."""
    bounds = bootstrap.difference_interval(confusions, baseline)
    return {**_interval("delta_miou", bounds), "delta_significant": bootstrap.significant(bounds)}


def squeezed_row(
    name: str, quantizer: QuantizerConfig, seed: int, summary: dict, seconds: float | None
) -> dict:
    axis = quantizer_class(quantizer.quantizer_type).sweep_axis
    row = {
        "name": name,
        "kind": Kind.SQUEEZED,
        "configuration": run_label(quantizer),
        "quantizer": quantizer.quantizer_type,
        "setting": axis,
        "value": quantizer_values(quantizer)[axis] if axis else None,
        "seed": seed,
        **{column.name: summary["rate"].get(column.rate_key) for column in RATE_COLUMNS},
        "miou": summary["vq_miou"],
        **_interval("miou", summary["vq_miou_ci"]),
        "miou_input_size": summary["vq_miou_input_size"],
        "baseline_miou": summary["baseline_miou"],
        "delta_miou": summary["miou_difference"],
        **_interval("delta_miou", summary["miou_difference_ci"]),
        "delta_significant": summary["miou_difference_significant"],
        "degenerate": summary["vq_degenerate"],
    }
    if "reference_miou" in summary:
        row["delta_miou_vs_reference"] = summary["miou_difference_vs_reference"]
        row.update(_interval("delta_miou_vs_reference", summary["miou_difference_vs_reference_ci"]))
    row["training_seconds"] = _rounded(seconds)
    row.update({f"iou_{k}": v for k, v in summary["vq_class_iou"].items()})
    return row


class Sweep:
    """One sweep's shared state: folders, data, device, and models loaded only when work needs them."""

    def __init__(self, plan: Plan, output_dir: Path):
        self.plan = plan
        self.output_dir = output_dir
        self.results = output_dir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(plan.runtime)
        self._datamodule = None
        self._modules: dict[str, object] = {}

    @property
    def datamodule(self):
        """The evaluation data: the same split, images and batch size as training used."""
        if self._datamodule is None:
            self._datamodule = datamodule_for(self.plan.data, self.plan.model, self.plan.training.seed)
            self._datamodule.setup()
        return self._datamodule

    def module(self, checkpoint: str | Path, kind: str):
        """The model of ``checkpoint``, loaded once per sweep."""
        if str(checkpoint) not in self._modules:
            self._modules[str(checkpoint)] = load_module(checkpoint, kind)
        return self._modules[str(checkpoint)]

    def _settings(self, quantizer: QuantizerConfig | None) -> dict:
        """The hyperparameters a run of this sweep stores: a finished run is reused only if they match."""
        plan = self.plan
        model = plan.model
        if model.weights not in ("default", "none"):
            model = replace(model, weights=str(Path(model.weights).resolve()))
        values = {**asdict(model), **asdict(plan.optimizer)}
        return {**values, **quantizer_values(quantizer)} if quantizer is not None else values

    def _fit(
        self, name: str, seed: int, quantizer: QuantizerConfig | None = None
    ) -> tuple[Path, float | None]:
        """Train ``name`` unless an earlier run of this sweep finished it; (last.ckpt, seconds of
        training, None when it was trained earlier)."""
        plan = self.plan
        training = replace(plan.training, seed=seed, experiment_name=name)
        trained = finished_run(training.output_dir, name, training.epochs, self._settings(quantizer))
        if trained is not None:
            log.info("reusing %s: trained earlier, not yet scored", trained)
            return trained, None
        started = time.perf_counter()
        try:
            checkpoint = fit(name, plan.model, plan.data, training, plan.runtime, plan.optimizer, quantizer)
        except Interrupted:
            raise Interrupted(
                f"sweep interrupted while training {name}; run the same command again to continue "
                "(finished models are kept)"
            ) from None
        return checkpoint, time.perf_counter() - started

    def baseline_row(self, seed: int) -> dict:
        """Train and score the baseline of ``seed``, with its floor and oracle rows from the same pass;
        the row file, written last, marks them all done."""
        name = f"baseline_seed{seed}"
        row = _finished(self.results, name)
        measured = [self.results / f"floor_seed{seed}.json", self.results / f"{name}_confusions.pt"]
        if row is not None and all(path.is_file() for path in measured):
            return row
        checkpoint, seconds = self._fit(name, seed)
        scores = evaluate_baseline(self.module(checkpoint, BASELINE), self.datamodule, SPLIT, self.device)
        torch.save(scores["confusions"], self.results / f"{name}_confusions.pt")
        write_json(self.results / f"floor_seed{seed}.json", self._floor_rows(scores, seed))
        row = {"name": name, "kind": Kind.BASELINE, "configuration": "baseline", "seed": seed,
               "checkpoint": str(checkpoint), "miou": scores["miou"], **_interval("miou", scores["miou_ci"]),
               "degenerate": degenerate(scores["confusions"].sum(dim=0), scores["class_names"]),
               "delta_miou": 0.0, "training_seconds": _rounded(seconds),
               **{f"iou_{k}": v for k, v in scores["class_iou"].items()}}  # fmt: skip
        write_json(self.results / f"{name}.json", row)
        return row

    def baseline_confusions(self, seed: int) -> torch.Tensor:
        return torch.load(self.results / f"baseline_seed{seed}_confusions.pt", weights_only=True)

    @staticmethod
    def _floor_rows(scores: dict, seed: int) -> list[dict]:
        """The baseline's masks sent losslessly (its mIoU, exactly), the ground truth's sizes and the
        grid oracles, measured in the baseline's scoring pass."""
        rows = []
        for configuration, entry in scores["floor"].items():
            row = {
                "name": f"{configuration}_seed{seed}",
                "configuration": configuration,
                "seed": seed,
                "codec": configuration.rsplit("_", 1)[1],
                "payload_bytes_per_image": entry["bytes_mean"],
                "payload_bytes_median": entry["bytes_median"],
                "header_bytes": entry["header_bytes"],
            }
            if configuration.startswith("mask_"):  # the baseline's own masks: its scores, exactly
                row.update(kind=Kind.FLOOR, miou=scores["miou"], **_interval("miou", scores["miou_ci"]),
                           delta_miou=0.0)  # fmt: skip
            elif configuration.startswith("gt_mask_"):  # for information: not scored against itself
                row.update(kind=Kind.FLOOR_GT)
            else:
                row.update(kind=Kind.ORACLE, codec="context", miou=entry["miou"],
                           **_interval("miou", entry["miou_ci"]), delta_miou=entry["miou"] - scores["miou"],
                           **{f"iou_{k}": v for k, v in entry["class_iou"].items()})  # fmt: skip
            rows.append(row)
        return rows

    def floor_rows(self, seed: int) -> list[dict]:
        return json.loads((self.results / f"floor_seed{seed}.json").read_text())

    def squeezed_row(
        self,
        quantizer: QuantizerConfig,
        baseline_row: dict,
        reference_row: dict | None = None,
        figures: Path | None = None,
    ) -> dict:
        """Train and score one squeezed model against its seed's baseline (and reference); ``figures``
        also draws its best and worst images there."""
        seed = baseline_row["seed"]
        name = f"{run_label(quantizer)}_seed{seed}"
        row = _finished(self.results, name)
        if row is not None and (figures is None or all((figures / f).is_file() for f in FIGURES)):
            return row
        checkpoint, seconds = self._fit(name, seed, quantizer) if row is None else (row["checkpoint"], None)
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        reference = self.module(reference_row["checkpoint"], SQUEEZED) if reference_row else None
        comparison = compare_models(
            self.module(baseline_row["checkpoint"], BASELINE),
            self.module(checkpoint, SQUEEZED),
            self.datamodule,
            SPLIT,
            self.device,
            n_best=rows_wanted,
            n_worst=rows_wanted,
            rank_by=("iou", "delta"),
            reference=reference,
        )
        if figures is not None:
            for ranking in ("iou", "delta"):
                folder = figures / ranking
                folder.mkdir(parents=True, exist_ok=True)
                draw_rankings(comparison, ranking, SPLIT, FIGURE_ROWS, FIGURE_ROWS, folder)
        if row is not None:  # only the figures were missing
            return row
        summary = {**comparison.summary(), "rate": comparison.rate}
        row = {**squeezed_row(name, quantizer, seed, summary, seconds), "checkpoint": str(checkpoint)}
        write_json(self.results / f"{name}.json", row)
        return row

    def input_rows(self, codec: str, quality: int, baselines: dict[int, dict]) -> list[dict]:
        """Every seed's baseline on test images sent as ``codec`` at ``quality``, from one pass."""
        configuration = f"{codec.lower()}_q{quality}"
        names = {seed: f"{configuration}_seed{seed}" for seed in baselines}
        found = [_finished(self.results, name) for name in names.values()]
        if all(row is not None for row in found):
            return found
        modules = {seed: self.module(row["checkpoint"], BASELINE) for seed, row in baselines.items()}
        measured = evaluate_input_compression(modules, self.datamodule, SPLIT, codec, quality, self.device)
        rows = []
        for seed, name in names.items():
            scores = measured["scores"][seed]
            row = {
                "name": name,
                "kind": Kind.INPUT,
                "configuration": configuration,
                "codec": codec,
                "quality": quality,
                "seed": seed,
                "payload_bytes_per_image": measured["payload_bytes_mean"],
                "header_bytes": measured["header_bytes"],
                "miou": scores["miou"],
                **_interval("miou", scores["miou_ci"]),
                "baseline_miou": baselines[seed]["miou"],
                "delta_miou": scores["miou"] - baselines[seed]["miou"],
                **_paired_delta(measured["confusions"][seed], self.baseline_confusions(seed)),
                **{f"iou_{k}": v for k, v in scores["class_iou"].items()},
            }
            write_json(self.results / f"{name}.json", row)
            rows.append(row)
        return rows


def configurations(args: argparse.Namespace) -> tuple[list[QuantizerConfig], QuantizerConfig]:
    """Every bottleneck of the sweep (per type, one per value of its sweep axis, the type's
    highest-quality one, largest K or smallest lambda, last) and the continuous reference.

    Settings that some type sweeps keep their defaults for the types that do not sweep them."""
    axes = {QUANTIZERS.find(name).sweep_axis for name in QUANTIZERS} - {None}
    shared = {key: value for key, value in vars(args).items() if key not in axes}
    chosen = []
    for name in dict.fromkeys(args.quantizer_type):
        cls = quantizer_class(name)
        if name == REFERENCE:  # every sweep trains it, once per seed
            continue
        for value in sorted(getattr(args, cls.sweep_axis), reverse=not cls.larger_is_finer):
            chosen.append(quantizer_config({**shared, "quantizer_type": name, cls.sweep_axis: value}))
    return chosen, quantizer_config({**shared, "quantizer_type": REFERENCE})


def run_sweep(
    plan: Plan,
    output_dir: Path,
    quantizers: list[QuantizerConfig],
    reference: QuantizerConfig,
    seeds: int,
    jpeg_qualities,
    settings: dict | None = None,
) -> list[dict]:
    """The sweep as a function: trains and measures what is missing, writes the tables, the plot and
    the report."""
    sweep = Sweep(plan, output_dir)
    seed_list = [plan.training.seed + offset for offset in range(seeds)]
    figures = output_dir / "figures"
    # the report shows the figures of the first type's finest model (or of the reference alone)
    first_type = [q for q in quantizers if q.quantizer_type == quantizers[0].quantizer_type]
    shown = f"{run_label(first_type[-1] if first_type else reference)}_seed{seed_list[0]}"

    def drawn(quantizer: QuantizerConfig, seed: int) -> Path | None:
        return figures if f"{run_label(quantizer)}_seed{seed}" == shown else None

    baselines = {seed: sweep.baseline_row(seed) for seed in seed_list}
    references = {seed: sweep.squeezed_row(reference, baselines[seed], figures=drawn(reference, seed))
                  for seed in seed_list}  # fmt: skip
    squeezed_rows = [
        sweep.squeezed_row(quantizer, baselines[seed], references[seed], drawn(quantizer, seed))
        for quantizer in quantizers
        for seed in seed_list
    ]
    input_rows = [row for codec in codecs() for quality in jpeg_qualities
                  for row in sweep.input_rows(codec, quality, baselines)]  # fmt: skip
    floor_rows = [row for seed in seed_list for row in sweep.floor_rows(seed)]
    rows = [*baselines.values(), *references.values(), *squeezed_rows, *input_rows, *floor_rows]
    aggregates, methods, summary_sentences = write_tables(rows, output_dir)
    for line in summary_sentences:
        log.info("%s", line)

    model, data = plan.model, sweep.datamodule
    masks = f", {data.hparams.mask_mode} masks" if data.hparams.mask_mode else ""
    title = f"{model.backbone} ({model.weights} weights), {data.title} {SPLIT}{masks}"
    names = {q.quantizer_type: quantizer_class(q.quantizer_type).title or q.quantizer_type.upper()
             for q in (*quantizers, reference)}  # fmt: skip
    plot_rate_quality(rows, title, output_dir / "rate_quality.png", names)
    captions = ("best images by VQ IoU", "worst images by VQ IoU", "where VQ loses most to the baseline")
    report_figures = [(output_dir / "rate_quality.png", "mIoU against measured bytes per image")]
    report_figures += [(figures / path, f"{shown}: {caption}") for path, caption in zip(FIGURES, captions)]
    report_settings = dict(settings or {})
    for config in (plan.model, plan.data, plan.optimizer, plan.training, plan.runtime):
        report_settings.update(asdict(config))
    write_report(
        output_dir / "report.html", f"Rate-quality sweep: {title}", report_settings, rows, aggregates,
        methods, summary_sentences, report_figures,
    )  # fmt: skip
    written = ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
    log.info("wrote %s", ", ".join(str(output_dir / n) for n in written))
    return rows
