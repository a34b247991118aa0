"""The sweep's work as a graph of jobs: train what is missing, measure every row against its own
seed's baseline, and collect the tables, the plot and the report (the ``sweep`` command's engine).

Stages, each needing only the results of earlier ones (``engine/launchers.py`` runs them in this
process, as processes, or as SLURM jobs):

    0 features     the frozen backbone's features of the training split, cached once for every job
    1 baseline     one per seed: trained and scored, with its floor and oracle rows
    2 squeezed     one per configuration and seed, the continuous reference among them, each scored
                   against its seed's baseline; input: one per image codec and quality (every seed)
    3 collect      the tables, the plot and the report from the results that exist, whatever the rest
                   did; each squeezed row against its seed's reference, from their per-image counts

Every job writes its rows to ``results/<row>.json`` as soon as they are measured, so any job can run
in any process, and a re-run skips what has a result. A job that fails writes its one-line reason to
``jobs/<job>.failed.json``; its rows become failed rows, and the other jobs go on.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from embeddings_squeeze.config import (
    BASELINE_EPOCHS,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.console import one_line
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.engine.compare import score_fields, write_page
from embeddings_squeeze.engine.evaluation import compare_models, evaluate_baseline, evaluate_input_compression
from embeddings_squeeze.engine.fitting import build_feature_cache, fit
from embeddings_squeeze.engine.run_dirs import completed_epochs, converged, finished_run, unfinished_run
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.models.backbones import precision
from embeddings_squeeze.models.quantizers import (
    QUANTIZERS,
    quantizer_class,
    quantizer_config,
    quantizer_values,
    reference_config,
    run_label,
)
from embeddings_squeeze.utils.columns import RATE_COLUMNS, Kind
from embeddings_squeeze.utils.comparison import degenerate
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import shown, write_json
from embeddings_squeeze.utils.input_compression import codecs
from embeddings_squeeze.utils.metrics import Scores, chosen, key_of
from embeddings_squeeze.utils.sweep_report import (
    plot_rate_quality,
    rate_at_quality,
    sentences,
    write_report,
    write_tables,
)
from embeddings_squeeze.utils.sweep_statistics import adjust, seed_means, with_intervals

log = logging.getLogger(__name__)
SPLIT = "test"
FIGURE_ROWS = 5
FIGURES = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")
PAGE = "figures/index.html"  # the page of the model whose figures the report shows


@dataclass(frozen=True)
class Plan:
    """Everything every model of the sweep shares."""

    model: ModelConfig
    data: DataConfig
    optimizer: OptimizerConfig
    training: TrainingConfig  # its seed is the first seed's; output_dir is <output_dir>/runs
    runtime: RuntimeConfig

    def values(self) -> dict:
        return {name: asdict(getattr(self, name)) for name in PLAN_PARTS}

    @classmethod
    def from_values(cls, values: dict) -> Plan:
        return cls(**{name: config(**values[name]) for name, config in PLAN_PARTS.items()})


PLAN_PARTS = {"model": ModelConfig, "data": DataConfig, "optimizer": OptimizerConfig,
              "training": TrainingConfig, "runtime": RuntimeConfig}  # fmt: skip


@dataclass(frozen=True)
class Job:
    """One unit of the sweep's work: ``rows`` are the results it writes, ``needs`` the jobs whose
    results it reads; ``options`` says what it measures (plain values)."""

    name: str
    kind: str  # features, baseline, squeezed, input or collect
    stage: int
    rows: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict) -> Job:
        return cls(**{**values, "rows": tuple(values["rows"]), "needs": tuple(values["needs"])})


@dataclass(frozen=True)
class SweepSpec:
    """A whole sweep as plain values: what every job needs to run in a process of its own."""

    plan: Plan
    quantizers: tuple[QuantizerConfig, ...]  # the squeezed models; their references are derived
    seeds: tuple[int, ...]
    jpeg_qualities: tuple[int, ...]
    settings: dict  # the command's flags, for the report
    metrics: tuple[str, ...] = ()  # beyond IoU (``utils/metrics.py``)
    baseline_epochs: int = BASELINE_EPOCHS  # the most a baseline trains; it stops once converged

    def values(self) -> dict:
        return {"plan": self.plan.values(), "quantizers": [quantizer_values(q) for q in self.quantizers],
                "seeds": list(self.seeds), "jpeg_qualities": list(self.jpeg_qualities),
                "settings": self.settings, "metrics": list(self.metrics),
                "baseline_epochs": self.baseline_epochs}  # fmt: skip

    @classmethod
    def from_values(cls, values: dict) -> SweepSpec:
        return cls(
            plan=Plan.from_values(values["plan"]),
            quantizers=tuple(quantizer_config(q) for q in values["quantizers"]),
            seeds=tuple(values["seeds"]),
            jpeg_qualities=tuple(values["jpeg_qualities"]),
            settings=values["settings"],
            metrics=tuple(values["metrics"]),
            baseline_epochs=values["baseline_epochs"],
        )

    def references(self) -> list[QuantizerConfig]:
        """The continuous reference of every squeezed model, each once (``reference_config``)."""
        found = [reference_config(q) for q in self.quantizers]
        return list({run_label(config): config for config in found}.values())

    def models(self) -> list[QuantizerConfig]:
        """Every squeezed model the sweep trains, references first, each once."""
        every = [*self.references(), *self.quantizers]
        return list({run_label(config): config for config in every}.values())

    def reference_label(self, configuration: str) -> str | None:
        """The run label of the reference a squeezed configuration is measured against."""
        labels = {run_label(q): run_label(reference_config(q)) for q in self.quantizers}
        return labels.get(configuration)

    def shown_model(self) -> str:
        """The model whose figures the report shows: the first type's finest, first seed (or the
        reference's, when the sweep has no other)."""
        first_type = [q for q in self.quantizers if q.quantizer_type == self.quantizers[0].quantizer_type]
        return f"{run_label(first_type[-1] if first_type else self.references()[0])}_seed{self.seeds[0]}"

    def jobs(self) -> list[Job]:
        """The job graph, in an order that runs each job after those it needs."""
        baselines = {seed: f"baseline_seed{seed}" for seed in self.seeds}
        jobs = [Job("features", "features", 0)]
        jobs += [Job(name, "baseline", 1, (name,), ("features",), {"seed": seed})
                 for seed, name in baselines.items()]  # fmt: skip
        for quantizer in self.models():
            for seed in self.seeds:
                name = f"{run_label(quantizer)}_seed{seed}"
                options = {"seed": seed, "quantizer": quantizer_values(quantizer),
                           "figures": name == self.shown_model()}  # fmt: skip
                jobs.append(Job(name, "squeezed", 2, (name,), ("features", baselines[seed]), options))
        for codec in codecs():
            for quality in self.jpeg_qualities:
                configuration = f"{codec.lower()}_q{quality}"
                rows = tuple(f"{configuration}_seed{seed}" for seed in self.seeds)
                options = {"codec": codec, "quality": quality}
                jobs.append(Job(configuration, "input", 2, rows, tuple(baselines.values()), options))
        jobs.append(Job("collect", "collect", 3, needs=tuple(job.name for job in jobs)))
        return jobs


def _finished(results: Path, name: str) -> dict | None:
    path = results / f"{name}.json"
    if path.is_file():
        log.info("skipping %s: finished earlier (%s)", name, path)
        return json.loads(path.read_text())
    return None


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 1)


def _metric_values(scores: dict, metrics, prefix: str = "") -> dict:
    """The values of the metrics beyond IoU of ``scores`` (``Scores.report`` keys, under ``prefix``)."""
    return {key_of(metric): scores[f"{prefix}{key_of(metric)}"] for metric in metrics[1:]}


def squeezed_row(
    name: str, quantizer: QuantizerConfig, seed: int, summary: dict, seconds: float | None, metrics=()
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
        "miou": summary["squeezed_miou"],
        "miou_input_size": summary["squeezed_miou_input_size"],
        "baseline_miou": summary["baseline_miou"],
        "delta_miou": summary["miou_difference"],
        "degenerate": summary["squeezed_degenerate"],
        **_metric_values(summary, list(metrics), "squeezed_"),
        **{f"delta_{key_of(m)}": summary[f"{key_of(m)}_difference"] for m in list(metrics)[1:]},
    }
    row["training_seconds"] = _rounded(seconds)
    row.update({f"iou_{k}": v for k, v in summary["squeezed_class_iou"].items()})
    return row


class Sweep:
    """One sweep's shared state: folders, data, device, and models loaded only when work needs them."""

    def __init__(self, spec: SweepSpec, output_dir: Path):
        self.spec = spec
        self.output_dir = output_dir
        self.results = output_dir / "results"
        self.results.mkdir(parents=True, exist_ok=True)
        self.jobs_dir = output_dir / "jobs"
        self.jobs_dir.mkdir(exist_ok=True)
        self.device = pick_device(spec.plan.runtime)
        # 'auto' resolved for the device this job runs on, as fit resolves it: the runs it finds match
        model = spec.plan.model
        resolved = precision.resolve(model.feature_precision, self.device)
        self.plan = replace(spec.plan, model=replace(model, feature_precision=resolved))
        self.metrics = chosen(spec.metrics)
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
        training, None when it was trained earlier). A baseline trains until it converges."""
        plan = self.plan
        training = replace(plan.training, seed=seed, experiment_name=name)
        if quantizer is None:
            training = replace(training, epochs=self.spec.baseline_epochs, converge=True)
        settings = self._settings(quantizer)
        trained = finished_run(training.output_dir, name, training.epochs, settings)
        if trained is not None:
            log.info("reusing %s: trained earlier, not yet scored", trained)
            return trained, None
        stopped = unfinished_run(training.output_dir, name, training.epochs, settings)
        if stopped is not None:  # requeued or killed on the way: continue from its last epoch
            log.info("resuming %s from its last completed epoch", stopped)
            training = replace(training, resume=str(stopped))
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
        measured = [self.results / f"floor_seed{seed}.json", self.results / f"{name}_statistics.pt"]
        if row is not None and all(path.is_file() for path in measured):
            return row
        checkpoint, seconds = self._fit(name, seed)
        baseline = self.module(checkpoint, BASELINE)
        scores = evaluate_baseline(baseline, self.datamodule, SPLIT, self.device, self.metrics)
        self._save_statistics(name, scores["statistics"])
        for cells, confusions in scores["oracle_confusions"].items():
            torch.save(
                {"confusion": confusions}, self.results / f"grid_oracle_{cells}_seed{seed}_statistics.pt"
            )
        write_json(self.results / f"floor_seed{seed}.json", self._floor_rows(scores, seed, self.metrics))
        trained = read_checkpoint(checkpoint)
        row = {"name": name, "kind": Kind.BASELINE, "configuration": "baseline", "seed": seed,
               "checkpoint": str(checkpoint), "epochs_trained": completed_epochs(trained),
               "converged": converged(trained), "miou": scores["miou"],
               "degenerate": degenerate(scores["confusions"].sum(dim=0), scores["class_names"]),
               "delta_miou": 0.0, "training_seconds": _rounded(seconds),
               **_metric_values(scores, self.metrics),
               **{f"iou_{k}": v for k, v in scores["class_iou"].items()}}  # fmt: skip
        write_json(self.results / f"{name}.json", row)
        return row

    def _save_statistics(self, name: str, scores: Scores) -> None:
        """The per-image statistics of a row's model, from which the collect step takes every interval."""
        # counts per image fit 32 bits; a many-class split's confusions are N x C x C of them
        stacked = {key: torch.stack(values).to(torch.int32) for key, values in scores.statistics.items()}
        torch.save(stacked, self.results / f"{name}_statistics.pt")

    def statistics(self, rows: list[dict]) -> dict[str, dict[str, torch.Tensor]]:
        """Per row name, the per-image statistics of its model (a floor row: its baseline's, which it
        scores exactly), for the rows that have them."""
        found = {}
        for row in rows:
            owner = f"baseline_seed{row['seed']}" if row["kind"] == Kind.FLOOR else row["name"]
            path = self.results / f"{owner}_statistics.pt"
            if path.is_file():
                found[row["name"]] = torch.load(path, weights_only=True)
        return found

    def reference_of(self, row: dict) -> str | None:
        """The continuous reference a squeezed row is compared with: its configuration's, of its seed."""
        label = self.spec.reference_label(row["configuration"]) if row["kind"] == Kind.SQUEEZED else None
        return None if label is None or label == row["configuration"] else f"{label}_seed{row['seed']}"

    @staticmethod
    def _floor_rows(scores: dict, seed: int, metrics) -> list[dict]:
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
                "amortised_bytes_per_image": entry["bytes_mean"],
                "payload_bytes_median": entry["bytes_median"],
                "header_bytes": entry["header_bytes"],
            }
            if configuration.startswith("mask_"):  # the baseline's own masks: its scores, exactly
                row.update(kind=Kind.FLOOR, miou=scores["miou"], delta_miou=0.0,
                           **_metric_values(scores, metrics))  # fmt: skip
            elif configuration.startswith("gt_mask_"):  # for information: not scored against itself
                row.update(kind=Kind.FLOOR_GT)
            else:
                row.update(kind=Kind.ORACLE, codec="context", miou=entry["miou"],
                           delta_miou=entry["miou"] - scores["miou"],
                           **{f"iou_{k}": v for k, v in entry["class_iou"].items()})  # fmt: skip
            rows.append(row)
        return rows

    def floor_rows(self, seed: int) -> list[dict]:
        return json.loads((self.results / f"floor_seed{seed}.json").read_text())

    def squeezed_row(
        self,
        quantizer: QuantizerConfig,
        baseline_row: dict,
        figures: Path | None = None,
    ) -> dict:
        """Train and score one squeezed model against its seed's baseline, keeping its per-image
        counts (the collect step pairs them with the reference's); ``figures`` also draws its best
        and worst images there."""
        seed = baseline_row["seed"]
        name = f"{run_label(quantizer)}_seed{seed}"
        row = _finished(self.results, name)
        if row is not None and (
            figures is None or all((figures / f).is_file() for f in (*FIGURES, "index.html"))
        ):
            return row
        checkpoint, seconds = self._fit(name, seed, quantizer) if row is None else (row["checkpoint"], None)
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        scored = []  # every image's scores, for the page of the model the report shows
        comparison = compare_models(
            self.module(baseline_row["checkpoint"], BASELINE),
            self.module(checkpoint, SQUEEZED),
            self.datamodule,
            SPLIT,
            self.device,
            n_best=rows_wanted,
            n_worst=rows_wanted,
            rank_by=("iou", "delta"),
            record=scored.append,
            metrics=tuple(self.metrics),
        )
        summary = {**comparison.summary(), "rate": comparison.rate, "split": SPLIT,
                   "baseline_checkpoint": baseline_row["checkpoint"],
                   "vq_checkpoint": str(checkpoint)}  # fmt: skip
        if figures is not None:
            for ranking in ("iou", "delta"):
                folder = figures / ranking
                folder.mkdir(parents=True, exist_ok=True)
                draw_rankings(comparison, ranking, SPLIT, FIGURE_ROWS, FIGURE_ROWS, folder)
            fields = score_fields(self.metrics, ["baseline", "squeezed"])
            write_page(figures / "index.html", summary, list(FIGURES), scored, fields, figures)
        if row is not None:  # only the figures were missing
            return row
        row = {
            **squeezed_row(name, quantizer, seed, summary, seconds, self.metrics),
            "checkpoint": str(checkpoint),
        }
        self._save_statistics(name, comparison.scores["squeezed"])
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
        measured = evaluate_input_compression(
            modules, self.datamodule, SPLIT, codec, quality, self.device, self.metrics
        )
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
                "amortised_bytes_per_image": measured["payload_bytes_mean"],
                "header_bytes": measured["header_bytes"],
                "miou": scores["miou"],
                "baseline_miou": baselines[seed]["miou"],
                "delta_miou": scores["miou"] - baselines[seed]["miou"],
                **_metric_values(scores, self.metrics),
                **{
                    f"delta_{key_of(m)}": scores[key_of(m)] - baselines[seed][key_of(m)]
                    for m in self.metrics[1:]
                },
                **{f"iou_{k}": v for k, v in scores["class_iou"].items()},
            }
            self._save_statistics(name, scores["statistics"])
            write_json(self.results / f"{name}.json", row)
            rows.append(row)
        return rows

    # -- jobs ---------------------------------------------------------------------------------------

    def failure_record(self, job_name: str) -> Path:
        return self.jobs_dir / f"{job_name}.failed.json"

    def is_done(self, job: Job) -> bool:
        """Whether every row of ``job`` has its result (and the figures, for the model they show)."""
        drawn = not job.options.get("figures") or all(
            (self.figures / f).is_file() for f in (*FIGURES, "index.html")
        )
        return bool(job.rows) and drawn and all((self.results / f"{row}.json").is_file() for row in job.rows)

    def run(self, job: Job) -> None:
        """Run one job of ``spec.jobs()`` (not the collect step); on failure, record its one-line
        reason for its rows, then raise. An interrupted job records nothing: it resumes on re-run."""
        record = self.failure_record(job.name)
        record.unlink(missing_ok=True)
        try:
            if job.kind == "features":
                plan = self.plan
                build_feature_cache(plan.model, plan.data, plan.optimizer, plan.training, plan.runtime)
            elif job.kind == "baseline":
                self.baseline_row(job.options["seed"])
            elif job.kind == "squeezed":
                self._squeezed_job(job)
            else:
                baselines = {seed: self._required(f"baseline_seed{seed}") for seed in self.spec.seeds}
                self.input_rows(job.options["codec"], job.options["quality"], baselines)
        except Interrupted:
            raise
        except Exception as error:
            write_json(record, {"job": job.name, "reason": failure_reason(error)})
            raise

    def _squeezed_job(self, job: Job) -> None:
        seed, quantizer = job.options["seed"], quantizer_config(job.options["quantizer"])
        baseline = self._required(f"baseline_seed{seed}")
        self.squeezed_row(quantizer, baseline, self.figures if job.options["figures"] else None)

    def _required(self, row: str) -> dict:
        """A row another job measured, refused with its job's reason when it has no result."""
        path = self.results / f"{row}.json"
        if path.is_file():
            return json.loads(path.read_text())
        record = self.failure_record(row)
        why = json.loads(record.read_text())["reason"] if record.is_file() else "it has not run"
        raise UserError(f"{row} has no result ({why})")

    @property
    def figures(self) -> Path:
        return self.output_dir / "figures"

    def collect(self, jobs: list[Job], ended: dict[str, str] | None = None) -> list[dict]:
        """The tables, the plot and the report from every result that exists; rows without one are
        marked failed (with the job's reason) or missing (with ``ended``: how a launcher saw its job
        end, e.g. killed). Loads no model."""
        ended = ended or {}
        measured, unmeasured = [], []
        for job in jobs:
            for name in job.rows:
                path = self.results / f"{name}.json"
                if path.is_file():
                    measured.append(json.loads(path.read_text()))
                    continue
                record = self.failure_record(job.name)
                failed = record.is_file()
                reason = (
                    json.loads(record.read_text())["reason"] if failed else ended.get(job.name, "not run")
                )
                configuration, _, seed = name.rpartition("_seed")
                kind = Kind.FAILED if failed else Kind.MISSING
                unmeasured.append({"name": name, "kind": kind, "configuration": configuration,
                                   "seed": int(seed), "reason": reason})  # fmt: skip
        baselines = [row["seed"] for row in measured if row["kind"] == Kind.BASELINE]
        floor_rows = [row for seed in baselines for row in self.floor_rows(seed)]
        rows = [*measured, *floor_rows]
        statistics = self.statistics(rows)
        rows = with_intervals(rows, statistics, self.metrics, self.reference_of)
        aggregates = seed_means(rows, statistics, self.metrics, self.reference_of)
        rule = adjust(rows + aggregates)
        methods = rate_at_quality(rows)
        summary_sentences = sentences(rows, aggregates, rule)
        write_tables(self.output_dir, rows, aggregates, methods, summary_sentences, unmeasured)
        for line in summary_sentences:
            log.info("%s", line)
        for row in unmeasured:
            log.warning("%s: %s, %s", row["name"], row["kind"], row["reason"])
        self._plot_and_report(rows, aggregates, methods, summary_sentences, unmeasured)
        written = ("sweep.csv", "sweep.json", "rate_quality.png", "report.html")
        log.info("wrote %s", ", ".join(shown(self.output_dir / n) for n in written))
        return rows + unmeasured

    def _plot_and_report(self, rows, aggregates, methods, summary_sentences, unmeasured) -> None:
        spec, model, data = self.spec, self.plan.model, self.datamodule
        masks = f", {data.hparams.mask_mode} masks" if data.hparams.mask_mode else ""
        title = f"{model.backbone} ({model.weights} weights), {data.title} {SPLIT}{masks}"
        names = {q.quantizer_type: quantizer_class(q.quantizer_type).title or q.quantizer_type.upper()
                 for q in spec.quantizers}  # fmt: skip
        names.update({run_label(r): f"continuous reference {run_label(r)}" for r in spec.references()})
        plot = self.output_dir / "rate_quality.png"
        try:
            plot_rate_quality(rows, aggregates, title, plot, names)
        except Exception as error:  # the tables are written: a figure that cannot be drawn is a warning
            log.warning(
                "warning: rate_quality.png not drawn (%s: %s)", type(error).__name__, one_line(str(error))
            )
            plot.unlink(missing_ok=True)
        captions = ("best images by VQ IoU", "worst images by VQ IoU", "where VQ loses most to the baseline")
        report_figures = [(self.output_dir / "rate_quality.png", "mIoU against measured bytes per image")]
        report_figures += [(self.figures / path, f"{spec.shown_model()}: {caption}")
                           for path, caption in zip(FIGURES, captions)]  # fmt: skip
        report_settings = dict(spec.settings)
        for config in (self.plan.model, self.plan.data, self.plan.optimizer, self.plan.training):
            report_settings.update(asdict(config))
        write_report(
            self.output_dir / "report.html", f"Rate-quality sweep: {title}", report_settings, rows,
            aggregates, methods, summary_sentences, report_figures, unmeasured,
            [(PAGE, f"{spec.shown_model()}: every image's scores, on a page of its own")]
            if (self.output_dir / PAGE).is_file() else [],
        )  # fmt: skip


def configurations(args: argparse.Namespace) -> list[QuantizerConfig]:
    """Every bottleneck of the sweep: per type, one per value of its sweep axis, the type's
    highest-quality one, largest K or smallest lambda, last (a type without an axis: one). Their
    continuous references follow from them (``SweepSpec.references``).

    Settings that some type sweeps keep their defaults for the types that do not sweep them."""
    axes = {QUANTIZERS.find(name).sweep_axis for name in QUANTIZERS} - {None}
    shared = {key: value for key, value in vars(args).items() if key not in axes}
    chosen = []
    for name in dict.fromkeys(args.quantizer_type):
        cls = quantizer_class(name)
        values = (
            sorted(getattr(args, cls.sweep_axis), reverse=not cls.larger_is_finer)
            if cls.sweep_axis
            else [None]
        )
        for value in values:
            point = {cls.sweep_axis: value} if cls.sweep_axis else {}
            chosen.append(quantizer_config({**shared, "quantizer_type": name, **point}))
    return chosen


def failure_reason(error: BaseException) -> str:
    """A failed job's reason as one line: a user mistake's own message, else the exception's."""
    return one_line(str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}")
