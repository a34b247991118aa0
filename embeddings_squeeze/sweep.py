"""Rate-quality sweep: a baseline and every (quantizer, codebook size) VQ model per seed, JPEG/WebP inputs.

    embeddings-squeeze sweep --model vit --quantizer_type vq fsq eb --num_vectors 16 64 256 1024 \\
        --lambdas 1 10 100 --seeds 3 --epochs 5 --output_dir ./sweep

Codebook quantizers (vq, rvq, fsq, lfq) take one point per --num_vectors; the learned entropy
bottleneck (eb) one per --lambdas. Every sweep also measures the task floor (the baseline's masks
coded losslessly), the ground truth's size and the grid oracles, and reports for every method the
bytes it needs at 90/95/99 % of the baseline's mIoU and its BD-rate against JPEG and WebP inputs.

Seeds vary initialisation and shuffling only: every model trains and is scored on one split (from
--split_seed), and each VQ model is compared with the baseline of its own seed. With --weights none
every model runs on the one random backbone of --backbone_seed. Writes <output_dir>/sweep.csv,
sweep.json, rate_quality.png and report.html. Each finished model leaves results/<name>.json;
running the same command again skips those and never overwrites them.
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
    QUANTIZER_CHOICES,
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
from embeddings_squeeze.engine.evaluation import (
    compare_models,
    evaluate_input_compression,
    evaluate_task_floor,
)
from embeddings_squeeze.engine.fitting import fit
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.utils.checkpoint import load_module
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.input_compression import JPEG_QUALITIES, codecs
from embeddings_squeeze.utils.sweep_report import plot_rate_quality, write_report, write_tables

log = logging.getLogger(__name__)
SPLIT = "test"
FIGURE_ROWS = 5
FIGURES = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")
RATE_FIELDS = (  # sweep column <- rate table key
    ("levels", "index_levels"),
    ("alphabet_size", "alphabet_size"),
    ("distinct_codes", "distinct_codes"),
    ("fixed_bits_per_image", "fixed_bits_per_image"),
    ("entropy_bits_per_image", "entropy_bits_per_image"),
    ("coded_bits_per_image", "coded_bits_per_image"),
    ("payload_bytes_per_image", "payload_bytes_mean"),
    ("compression_vs_float32", "compression_vs_float32_payload"),
    ("compression_vs_float16", "compression_vs_float16_payload"),
    ("compression_vs_float32_coded", "compression_vs_float32_coded"),
    ("code_usage", "code_usage_on_split"),
    ("codes_replaced_per_step", "codes_replaced_per_step_after_epoch1"),
    ("decoder_bytes", "decoder_bytes"),
    ("head_bytes", "head_bytes"),
)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    group = parser.add_argument_group("sweep")
    group.add_argument("--quantizer_type", nargs="+", choices=QUANTIZER_CHOICES, default=["vq"])
    group.add_argument("--num_vectors", nargs="+", type=positive_int, default=[16, 64, 256])
    group.add_argument(
        "--lambdas", nargs="+", type=float, default=[1.0, 10.0, 100.0],
        help="eb: rate weights, one model each (default: 1 10 100)",
    )  # fmt: skip
    group.add_argument(
        "--seeds", type=positive_int, default=1,
        help="seeds per configuration, --seed, --seed + 1, ...; each trains its own baseline (default: 1)",
    )  # fmt: skip
    group.add_argument("--jpeg_qualities", nargs="+", type=positive_int, default=list(JPEG_QUALITIES))
    group.add_argument("--output_dir", default="./sweep", help="default: ./sweep")
    add_arguments(parser, ModelConfig)
    add_arguments(parser, DataConfig)
    add_arguments(parser, OptimizerConfig)
    add_arguments(parser, TrainingConfig, only=("epochs", "seed"), defaults={"epochs": 5})
    add_arguments(
        parser, QuantizerConfig, only=("bottleneck_dim", "num_quantizers"), defaults={"num_quantizers": 2}
    )
    add_arguments(parser, RuntimeConfig, only=("accelerator", "devices"))
    return parser


@dataclass(frozen=True)
class Plan:
    """Everything every model of the sweep shares."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    training: TrainingConfig  # its seed is the first seed's; output_dir is <output_dir>/runs
    quantizer: QuantizerConfig  # its type and size vary per model
    runtime: RuntimeConfig


def _finished(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def model_name(quantizer: QuantizerConfig, seed: int) -> str:
    if quantizer.quantizer_type == "eb":
        return f"eb_lambda{quantizer.rate_lambda:g}_seed{seed}"
    return f"{quantizer.quantizer_type}_K{quantizer.num_vectors}_seed{seed}"


def _vq_row(name: str, quantizer: QuantizerConfig, seed: int, summary: dict, seconds: float) -> dict:
    eb = quantizer.quantizer_type == "eb"
    row = {
        "name": name,
        "kind": "vq",
        "quantizer": quantizer.quantizer_type,
        "num_vectors": None if eb else quantizer.num_vectors,
        "lambda": quantizer.rate_lambda if eb else None,
        "seed": seed,
    }
    row.update({column: summary["rate"].get(key) for column, key in RATE_FIELDS})
    row.update(
        miou=summary["vq_miou"],
        baseline_miou=summary["baseline_miou"],
        delta_miou=summary["miou_difference"],
        training_seconds=round(seconds, 1),
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

    def _fit(self, name: str, seed: int, quantizer: QuantizerConfig | None = None) -> Path:
        plan = self.plan
        training = replace(plan.training, seed=seed, experiment_name=name)
        try:
            return fit(name, plan.model, plan.data, training, plan.runtime, plan.optimizer, quantizer)
        except Interrupted:
            raise Interrupted(
                f"sweep interrupted while training {name}; run the same command again to continue "
                "(finished models are kept)"
            ) from None

    def baseline_row(self, seed: int) -> dict:
        name = f"baseline_seed{seed}"
        row = _finished(self.results, name)
        if row is None:
            started = time.perf_counter()
            checkpoint = self._fit(name, seed)
            row = {"name": name, "kind": "baseline", "seed": seed, "checkpoint": str(checkpoint),
                   "training_seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        return row

    def baseline(self, row: dict):
        if row["seed"] not in self._baselines:
            self._baselines[row["seed"]] = load_module(row["checkpoint"], "baseline")
        return self._baselines[row["seed"]]

    def vq_row(self, quantizer: QuantizerConfig, seed: int, baseline_row: dict, figures: Path | None) -> dict:
        """Train and score one VQ model; ``figures`` also draws its best and worst images there."""
        name = model_name(quantizer, seed)
        row = _finished(self.results, name)
        if row is not None and (figures is None or all((figures / f).is_file() for f in FIGURES)):
            return row
        started = time.perf_counter()
        checkpoint = self._fit(name, seed, quantizer) if row is None else row["checkpoint"]
        seconds = time.perf_counter() - started
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        comparison = compare_models(
            self.baseline(baseline_row), load_module(checkpoint, "vq"), self.datamodule.dataloader(SPLIT),
            self.datamodule.splits[SPLIT].image_ids, rows_wanted, rows_wanted, self.device,
            record=lambda _: None, rank_by=("iou", "delta"),
        )  # fmt: skip
        if figures is not None:
            for ranking in ("iou", "delta"):
                folder = figures / ranking
                folder.mkdir(parents=True, exist_ok=True)
                draw_rankings(comparison, ranking, SPLIT, FIGURE_ROWS, FIGURE_ROWS, folder)
        if row is not None:  # only the figures were missing
            return row
        summary = {**comparison.summary(), "rate": comparison.rate}
        if "miou" not in baseline_row:
            baseline_row.update(
                miou=summary["baseline_miou"], delta_miou=0.0,
                **{f"iou_{k}": v for k, v in summary["baseline_class_iou"].items()},
            )  # fmt: skip
            write_json(self.results / f"{baseline_row['name']}.json", baseline_row)
        row = {**_vq_row(name, quantizer, seed, summary, seconds), "checkpoint": str(checkpoint)}
        write_json(self.results / f"{name}.json", row)
        return row

    def input_row(self, codec: str, quality: int, baseline_row: dict) -> dict:
        """The baseline on test images sent as ``codec`` at ``quality`` (the first seed's baseline)."""
        name = f"{codec.lower()}_q{quality}"
        row = _finished(self.results, name)
        if row is None:
            measured = evaluate_input_compression(
                self.baseline(baseline_row), self.datamodule.dataloader(SPLIT), codec, quality, self.device
            )
            row = {"name": name, "kind": "input", "codec": codec, "quality": quality,
                   "payload_bytes_per_image": measured["payload_bytes_mean"], "miou": measured["miou"],
                   "delta_miou": measured["miou"] - baseline_row["miou"],
                   **{f"iou_{k}": v for k, v in measured["class_iou"].items()}}  # fmt: skip
            write_json(self.results / f"{name}.json", row)
        return row

    def floor_rows(self, baseline_row: dict) -> list[dict]:
        """The task floor (the first seed's baseline masks, lossless), the ground truth's sizes and the
        grid oracles, from one pass over the test images."""
        finished = _finished(self.results, "task_floor")
        if finished is not None:
            return finished["rows"]
        measured = evaluate_task_floor(
            self.baseline(baseline_row), self.datamodule.dataloader(SPLIT), self.device
        )
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
        write_json(self.results / "task_floor.json", {"rows": rows})
        return rows


def main(args: argparse.Namespace) -> list[dict]:
    output_dir = Path(args.output_dir)
    training = from_namespace(TrainingConfig, args, output_dir=str(output_dir / "runs"))
    plan = Plan(
        model=from_namespace(ModelConfig, args),
        data=from_namespace(DataConfig, args),
        optimizer=from_namespace(OptimizerConfig, args),
        training=training,
        quantizer=from_namespace(QuantizerConfig, args),
        runtime=from_namespace(RuntimeConfig, args),
    )
    return run_sweep(
        plan, output_dir, args.quantizer_type, args.num_vectors, args.seeds, args.jpeg_qualities, args.lambdas
    )


def _configurations(base: QuantizerConfig, quantizer_types, sizes, lambdas) -> list[QuantizerConfig]:
    """Every bottleneck of the sweep; each type's highest-quality one (largest K, smallest lambda) last."""
    configurations = []
    for quantizer_type in quantizer_types:
        if quantizer_type == "eb":
            configurations += [
                replace(base, quantizer_type="eb", rate_lambda=v) for v in sorted(lambdas)[::-1]
            ]
        else:
            configurations += [
                replace(base, quantizer_type=quantizer_type, num_vectors=k) for k in sorted(sizes)
            ]
    return configurations


def run_sweep(
    plan: Plan, output_dir: Path, quantizer_types, sizes, seeds: int, jpeg_qualities, lambdas=(1.0,)
) -> list[dict]:
    """The sweep as a function: trains what is missing, writes the tables, the plot and the report."""
    sweep = Sweep(plan, output_dir)
    seed_list = [plan.training.seed + offset for offset in range(seeds)]
    figures = output_dir / "figures"
    configurations = _configurations(plan.quantizer, quantizer_types, sizes, lambdas)
    first_type = [c for c in configurations if c.quantizer_type == quantizer_types[0]]
    name = model_name(first_type[-1], seed_list[0])  # the model the report shows
    baselines = {seed: sweep.baseline_row(seed) for seed in seed_list}
    vq_rows = []
    for quantizer in configurations:
        for seed in seed_list:
            draw = figures if model_name(quantizer, seed) == name else None
            vq_rows.append(sweep.vq_row(quantizer, seed, baselines[seed], draw))
    if any("miou" not in row for row in baselines.values()):
        raise UserError("the sweep needs at least one VQ model to score the baseline against")
    first = baselines[seed_list[0]]
    input_rows = [sweep.input_row(codec, quality, first) for codec in codecs() for quality in jpeg_qualities]
    rows = [*baselines.values(), *vq_rows, *input_rows, *sweep.floor_rows(first)]
    aggregates, methods, summary_sentences = write_tables(rows, output_dir)
    for line in summary_sentences:
        log.info("%s", line)

    model, data = plan.model, sweep.datamodule
    masks = f", {data.hparams.mask_mode} masks" if data.hparams.mask_mode else ""
    title = f"{model.backbone} ({model.weights} weights), {data.title} {SPLIT}{masks}"
    plot_rate_quality(rows, title, output_dir / "rate_quality.png")
    captions = ("best images by VQ IoU", "worst images by VQ IoU", "where VQ loses most to the baseline")
    report_figures = [(output_dir / "rate_quality.png", "mIoU against measured bytes per image")]
    report_figures += [(figures / path, f"{name}: {caption}") for path, caption in zip(FIGURES, captions)]
    settings = {"quantizer_type": quantizer_types, "num_vectors": sizes, "lambdas": lambdas, "seeds": seeds}
    for config in (plan.model, plan.data, plan.optimizer, plan.training, plan.quantizer, plan.runtime):
        settings.update(asdict(config))
    write_report(
        output_dir / "report.html", f"Rate-quality sweep: {title}", settings, rows, aggregates, methods,
        summary_sentences, report_figures,
    )  # fmt: skip
    written = ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
    log.info("wrote %s", ", ".join(str(output_dir / n) for n in written))
    return rows


if __name__ == "__main__":
    cli.run(main, get_args_parser())
