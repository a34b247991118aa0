"""Rate-quality sweep: a baseline and every squeezed model per seed, and the references they face.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq eb --num_vectors 16 64 256 1024 \\
        --lambdas 1 10 100 --seeds 3 --epochs 5 --output_dir ./sweep

Each quantizer type takes one model per value of its sweep axis: --num_vectors for codebook types,
--lambdas for the entropy bottleneck (eb). Every sweep also measures the task floor (the baseline's
masks coded losslessly), the ground truth's size, the grid oracles and the baseline on JPEG/WebP
images, and reports for every method the bytes it needs at 90/95/99 % of the baseline's mIoU and
its BD-rate against JPEG and WebP inputs.

Seeds vary initialisation and shuffling only: every model trains and is scored on one split (from
--split_seed), and each squeezed model is compared with the baseline of its own seed. With
--weights none every model runs on the one random backbone of --backbone_seed. Writes
<output_dir>/sweep.csv, sweep.json, rate_quality.png and report.html. Each finished model leaves
results/<name>.json as soon as it is scored; running the same command again skips those, reuses
models that finished training but were not scored, and never overwrites a result.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from embeddings_squeeze import cli
from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
    positive_int,
)
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.evaluation import (
    compare_models,
    evaluate_input_compression,
    evaluate_task_floor,
)
from embeddings_squeeze.engine.fitting import fit
from embeddings_squeeze.engine.run_dirs import finished_run
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.errors import Interrupted
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.models.quantizers import (
    add_quantizer_arguments,
    quantizer_class,
    quantizer_config,
    quantizer_values,
)
from embeddings_squeeze.utils import columns
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.input_compression import JPEG_QUALITIES, codecs
from embeddings_squeeze.utils.sweep_report import plot_rate_quality, write_report, write_tables

log = logging.getLogger(__name__)
SPLIT = "test"
FIGURE_ROWS = 5
FIGURES = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    group = parser.add_argument_group("sweep")
    group.add_argument(
        "--seeds", type=positive_int, default=1,
        help="seeds per configuration, --seed, --seed + 1, ...; each trains its own baseline (default: 1)",
    )  # fmt: skip
    group.add_argument(
        "--jpeg_qualities", nargs="+", type=positive_int, default=list(JPEG_QUALITIES),
        help="qualities of the JPEG/WebP image references (default: %(default)s)",
    )  # fmt: skip
    group.add_argument("--output_dir", default="./sweep", help="where everything goes (default: ./sweep)")
    add_arguments(parser, ModelConfig)
    add_arguments(parser, DataConfig)
    add_arguments(parser, OptimizerConfig)
    add_arguments(parser, TrainingConfig, only=("epochs", "seed"), defaults={"epochs": 5})
    add_quantizer_arguments(parser, sweep=True)
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    return parser


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


def configuration_name(quantizer: QuantizerConfig) -> str:
    """A squeezed model's name without its seed, e.g. vq_K64 or eb_lambda10."""
    return f"{quantizer.quantizer_type}_{quantizer_class(quantizer.quantizer_type).label(quantizer)}"


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def squeezed_row(
    name: str, quantizer: QuantizerConfig, seed: int, summary: dict, seconds: float | None
) -> dict:
    axis = quantizer_class(quantizer.quantizer_type).sweep_axis
    row = {
        "name": name,
        "kind": columns.SQUEEZED,
        "configuration": configuration_name(quantizer),
        "quantizer": quantizer.quantizer_type,
        "setting": axis,
        "value": quantizer_values(quantizer)[axis],
        "seed": seed,
    }
    row.update({column.name: summary["rate"].get(column.rate_key) for column in columns.RATE_COLUMNS})
    row.update(
        miou=summary["vq_miou"],
        baseline_miou=summary["baseline_miou"],
        delta_miou=summary["miou_difference"],
        training_seconds=_rounded(seconds),
        **{f"iou_{k}": v for k, v in summary["vq_class_iou"].items()},
    )
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
        self._baselines: dict[int, object] = {}

    @property
    def datamodule(self):
        """The evaluation data: the same split, images and batch size as training used."""
        if self._datamodule is None:
            self._datamodule = datamodule_for(self.plan.data, self.plan.model, self.plan.training.seed)
            self._datamodule.setup()
        return self._datamodule

    def _fit(
        self, name: str, seed: int, quantizer: QuantizerConfig | None = None
    ) -> tuple[Path, float | None]:
        """Train ``name`` unless an earlier run of this sweep finished it; (last.ckpt, seconds of
        training, None when it was trained earlier)."""
        plan = self.plan
        training = replace(plan.training, seed=seed, experiment_name=name)
        trained = finished_run(training.output_dir, name, training.epochs)
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
        """Train and score the baseline of ``seed``; its result is written as soon as it is scored."""
        name = f"baseline_seed{seed}"
        row = _finished(self.results, name)
        if row is not None:
            return row
        checkpoint, seconds = self._fit(name, seed)
        loader = self.datamodule.dataloader(SPLIT)
        scores = evaluate_task_floor(self.baseline(seed, checkpoint), loader, self.device)
        row = {"name": name, "kind": BASELINE, "seed": seed, "checkpoint": str(checkpoint),
               "training_seconds": _rounded(seconds), "miou": scores["baseline_miou"], "delta_miou": 0.0,
               **{f"iou_{k}": v for k, v in scores["baseline_class_iou"].items()}}  # fmt: skip
        write_json(self.results / f"{name}.json", row)
        write_json(self.results / f"task_floor_seed{seed}.json", scores)
        return row

    def baseline(self, seed: int, checkpoint: str | Path):
        if seed not in self._baselines:
            self._baselines[seed] = load_module(checkpoint, BASELINE)
        return self._baselines[seed]

    def squeezed_row(
        self, quantizer: QuantizerConfig, seed: int, baseline_row: dict, figures: Path | None
    ) -> dict:
        """Train and score one squeezed model; ``figures`` also draws its best and worst images there."""
        name = f"{configuration_name(quantizer)}_seed{seed}"
        row = _finished(self.results, name)
        if row is not None and (figures is None or all((figures / f).is_file() for f in FIGURES)):
            return row
        checkpoint, seconds = self._fit(name, seed, quantizer) if row is None else (row["checkpoint"], None)
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        comparison = compare_models(
            self.baseline(seed, baseline_row["checkpoint"]), load_module(checkpoint, SQUEEZED),
            self.datamodule.dataloader(SPLIT), self.datamodule.splits[SPLIT].image_ids, rows_wanted,
            rows_wanted, self.device, record=lambda _: None, rank_by=("iou", "delta"),
        )  # fmt: skip
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

    def input_row(self, codec: str, quality: int, baseline_row: dict) -> dict:
        """The baseline on test images sent as ``codec`` at ``quality`` (the first seed's baseline)."""
        name = f"{codec.lower()}_q{quality}"
        row = _finished(self.results, name)
        if row is None:
            baseline = self.baseline(baseline_row["seed"], baseline_row["checkpoint"])
            measured = evaluate_input_compression(
                baseline, self.datamodule.dataloader(SPLIT), codec, quality, self.device
            )
            row = {"name": name, "kind": "input", "codec": codec, "quality": quality,
                   "payload_bytes_per_image": measured["payload_bytes_mean"], "miou": measured["miou"],
                   "delta_miou": measured["miou"] - baseline_row["miou"],
                   **{f"iou_{k}": v for k, v in measured["class_iou"].items()}}  # fmt: skip
            write_json(self.results / f"{name}.json", row)
        return row

    def floor_rows(self, baseline_row: dict) -> list[dict]:
        """The task floor (the first seed's baseline masks, lossless), the ground truth's sizes and the
        grid oracles, measured in the baseline's scoring pass."""
        measured = json.loads((self.results / f"task_floor_seed{baseline_row['seed']}.json").read_text())
        rows = []
        for name, entry in measured["rows"].items():
            row = {
                "name": name,
                "codec": name.rsplit("_", 1)[1],
                "payload_bytes_per_image": entry["bytes_mean"],
                "payload_bytes_median": entry["bytes_median"],
            }
            if name.startswith("mask_"):
                row.update(kind="floor", miou=measured["baseline_miou"], delta_miou=0.0)
            elif name.startswith("gt_mask_"):
                row.update(kind="floor_gt")  # for information: the ground truth is not scored against itself
            else:
                row.update(kind="oracle", codec="context", miou=entry["miou"],
                           delta_miou=entry["miou"] - baseline_row["miou"],
                           **{f"iou_{k}": v for k, v in entry["class_iou"].items()})  # fmt: skip
            rows.append(row)
        return rows


def main(args: argparse.Namespace) -> list[dict]:
    output_dir = Path(args.output_dir)
    training = from_namespace(TrainingConfig, args, output_dir=str(output_dir / "runs"))
    plan = Plan(
        model=from_namespace(ModelConfig, args),
        data=from_namespace(DataConfig, args),
        optimizer=from_namespace(OptimizerConfig, args),
        training=training,
        runtime=from_namespace(RuntimeConfig, args),
    )
    return run_sweep(plan, output_dir, configurations(args), args.seeds, args.jpeg_qualities, vars(args))


def configurations(args: argparse.Namespace) -> list[QuantizerConfig]:
    """Every bottleneck of the sweep: per type, one per value of its sweep axis, the type's
    highest-quality one (largest K, smallest lambda) last; other types' axes keep their defaults."""
    classes = [quantizer_class(name) for name in args.quantizer_type]
    shared = {key: value for key, value in vars(args).items() if key not in {c.sweep_axis for c in classes}}
    chosen = []
    for cls in classes:
        for value in sorted(getattr(args, cls.sweep_axis), reverse=not cls.larger_is_finer):
            chosen.append(quantizer_config({**shared, "quantizer_type": cls.name, cls.sweep_axis: value}))
    return chosen


def run_sweep(
    plan: Plan,
    output_dir: Path,
    quantizers: list[QuantizerConfig],
    seeds: int,
    jpeg_qualities,
    settings: dict | None = None,
) -> list[dict]:
    """The sweep as a function: trains what is missing, writes the tables, the plot and the report."""
    sweep = Sweep(plan, output_dir)
    seed_list = [plan.training.seed + offset for offset in range(seeds)]
    figures = output_dir / "figures"
    first_type = [q for q in quantizers if q.quantizer_type == quantizers[0].quantizer_type]
    shown = f"{configuration_name(first_type[-1])}_seed{seed_list[0]}"  # the model the report shows
    baselines = {seed: sweep.baseline_row(seed) for seed in seed_list}
    squeezed_rows = []
    for quantizer in quantizers:
        for seed in seed_list:
            draw = figures if f"{configuration_name(quantizer)}_seed{seed}" == shown else None
            squeezed_rows.append(sweep.squeezed_row(quantizer, seed, baselines[seed], draw))
    first = baselines[seed_list[0]]
    input_rows = [sweep.input_row(codec, quality, first) for codec in codecs() for quality in jpeg_qualities]
    rows = [*baselines.values(), *squeezed_rows, *input_rows, *sweep.floor_rows(first)]
    aggregates, methods, summary_sentences = write_tables(rows, output_dir)
    for line in summary_sentences:
        log.info("%s", line)

    model, data = plan.model, sweep.datamodule
    masks = f", {data.hparams.mask_mode} masks" if data.hparams.mask_mode else ""
    title = f"{model.backbone} ({model.weights} weights), {data.title} {SPLIT}{masks}"
    plot_rate_quality(rows, title, output_dir / "rate_quality.png")
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


if __name__ == "__main__":
    cli.run(main, get_args_parser())
