"""Running a sweep's jobs: the shared state (folders, data, device, models loaded once), training
what is missing (baselines until converged), and measuring each job's rows against its seed's
baseline, with the per-image statistics the collect step needs."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.console import one_line
from embeddings_squeeze.engine.baseline_cache import KeptBaseline, statistics_specs
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.engine.evaluation import (
    CompareOptions,
    compare_models,
    evaluate_baseline,
    evaluate_input_compression,
)
from embeddings_squeeze.engine.fitting import build_feature_cache, fit, serve_cached_features
from embeddings_squeeze.engine.run_dirs import completed_epochs, converged, finished_run, unfinished_run
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.engine.sweep.rows import baseline_row, finished, floor_rows, input_row, squeezed_row
from embeddings_squeeze.engine.sweep.spec import FIGURES, SPLIT, Job, JobKind, SweepSpec
from embeddings_squeeze.errors import Interrupted, UserError
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.models.backbones import precision
from embeddings_squeeze.models.quantizers import quantizer_config, quantizer_values, run_label
from embeddings_squeeze.utils import pages
from embeddings_squeeze.utils.columns import Kind
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.metrics import chosen
from embeddings_squeeze.utils.records import ComparisonReport, score_fields

log = logging.getLogger(__name__)
FIGURE_ROWS = 5


class Sweep:
    """One sweep's shared state: folders, data, device, and models loaded only when work needs them."""

    def __init__(self, spec: SweepSpec, output_dir: Path):
        self.spec = spec
        self.output_dir = output_dir
        self.results = output_dir / "results"
        self.jobs_dir = output_dir / "jobs"
        self.device = pick_device(spec.plan.runtime)
        # 'auto' resolved for the device this job runs on, as fit resolves it: the runs it finds match
        model = spec.plan.model
        resolved = precision.resolve(model.feature_precision, self.device)
        self.plan = replace(spec.plan, model=replace(model, feature_precision=resolved))
        self.metrics = chosen(spec.metrics)
        self._datamodule = None
        self._modules: dict[str, object] = {}

    def make_folders(self) -> None:
        """The results and jobs folders, once the sweep runs (a dry run leaves no trace)."""
        self.results.mkdir(parents=True, exist_ok=True)
        self.jobs_dir.mkdir(exist_ok=True)

    @property
    def datamodule(self):
        """The evaluation data: the same split, images and batch size as training used."""
        if self._datamodule is None:
            self._datamodule = datamodule_for(self.plan.data, self.plan.model, self.plan.training.seed)
            self._datamodule.setup()
        return self._datamodule

    def scored_data(self, module):
        """``datamodule`` with the scored split read from the feature cache where the sweep caches
        features (``module``'s backbone builds the entry if the features job has not)."""
        data, plan = self.datamodule, self.plan
        if data.splits[SPLIT] is data.files[SPLIT]:
            serve_cached_features(data, module.backbone, plan.training, plan.runtime, (SPLIT,))
        return data

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
        row = finished(self.results, name)
        measured = [self.results / f"floor_seed{seed}.json", self.results / f"{name}_statistics.pt"]
        if row is not None and all(path.is_file() for path in measured):
            return row
        checkpoint, seconds = self._fit(name, seed)
        baseline = self.module(checkpoint, BASELINE)
        measured = evaluate_baseline(baseline, self.scored_data(baseline), SPLIT, self.device, self.metrics)
        self._save_statistics(name, measured.statistics.statistics)
        self._save_statistics(f"{name}_input", {"confusion": measured.input_confusion})
        for cells, confusions in measured.oracle_confusions.items():
            self._save_statistics(f"grid_oracle_{cells}_seed{seed}", {"confusion": confusions})
        write_json(self.results / f"floor_seed{seed}.json", floor_rows(measured, seed))
        stored = read_checkpoint(checkpoint)
        trained = {
            "epochs_trained": completed_epochs(stored),
            "converged": converged(stored),
            "seconds": seconds,
        }
        row = baseline_row(name, seed, checkpoint, measured.scores, trained)
        write_json(self.results / f"{name}.json", row)
        return row

    def _kept_baseline(self, seed: int) -> KeptBaseline | None:
        """The per-image statistics and input-size counts the baseline job of ``seed`` saved, which a
        squeezed model's comparison reads instead of running the baseline again. None (the baseline
        runs) where a metric is not the package's own (its statistics may be fractions, which the
        saved int32 would cut), or they were saved by an earlier version of this package (without the
        counts) or for other metrics."""
        name = f"baseline_seed{seed}"
        paths = [self.results / f"{name}_statistics.pt", self.results / f"{name}_input_statistics.pt"]
        if statistics_specs(self.metrics) is None or not all(path.is_file() for path in paths):
            return None
        statistics, counts = (torch.load(path, weights_only=True) for path in paths)
        keys = {metric.statistics_key for metric in self.metrics}
        if not keys <= set(statistics):
            return None
        # saved as int32; the floor is in the sweep's own rows
        return KeptBaseline({}, {key: statistics[key].long() for key in keys}, counts["confusion"].long())

    def _save_statistics(self, name: str, statistics: dict) -> None:
        """Per-image statistics (by statistics key: a list of per-image tensors, or their stack) of a
        row's model, from which the collect step takes every interval, or the baseline's counts at
        the input size and the grid oracles' that go with its row."""
        # counts per image fit 32 bits; a many-class split's confusions are N x C x C of them
        stacked = {key: torch.stack(list(values)).to(torch.int32) for key, values in statistics.items()}
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
        row = finished(self.results, name)
        if row is not None and (
            figures is None or all((figures / f).is_file() for f in (*FIGURES, "index.html"))
        ):
            return row
        checkpoint, seconds = self._fit(name, seed, quantizer) if row is None else (row["checkpoint"], None)
        rows_wanted = FIGURE_ROWS if figures is not None else 0
        scored = []  # every image's scores, for the page of the model the report shows
        options = CompareOptions(n_best=rows_wanted, n_worst=rows_wanted, record=scored.append,
                                 rank_by=("iou", "delta"), metrics=tuple(self.metrics),
                                 kept=self._kept_baseline(seed))  # fmt: skip
        baseline = self.module(baseline_row["checkpoint"], BASELINE)
        data = self.scored_data(baseline)
        comparison = compare_models(
            baseline, self.module(checkpoint, SQUEEZED), data, SPLIT, self.device, options
        )
        checkpoints = {"baseline": baseline_row["checkpoint"], "squeezed": str(checkpoint)}
        report = ComparisonReport(comparison.result(), SPLIT, checkpoints, comparison.rate)
        if figures is not None:
            for ranking in ("iou", "delta"):
                folder = figures / ranking
                folder.mkdir(parents=True, exist_ok=True)
                # a degenerate model says so on its figures
                draw_rankings(
                    comparison, ranking, SPLIT, FIGURE_ROWS, FIGURE_ROWS, folder, tuple(report.warnings)
                )
            fields = score_fields(tuple(metric.name for metric in self.metrics), ("baseline", "squeezed"))
            page = pages.comparison_page(report, figures, list(FIGURES), scored, fields)
            (figures / "index.html").write_text(page)
        if row is not None:  # only the figures were missing
            return row
        row = {
            **squeezed_row(name, quantizer, seed, report, seconds),
            "checkpoint": str(checkpoint),
        }
        self._save_statistics(name, comparison.scores["squeezed"].statistics)
        write_json(self.results / f"{name}.json", row)
        return row

    def input_rows(self, codec: str, quality: int, baselines: dict[int, dict]) -> list[dict]:
        """Every seed's baseline on test images sent as ``codec`` at ``quality``, from one pass."""
        names = {seed: f"{codec.lower()}_q{quality}_seed{seed}" for seed in baselines}
        found = [finished(self.results, name) for name in names.values()]
        if all(row is not None for row in found):
            return found
        modules = {seed: self.module(row["checkpoint"], BASELINE) for seed, row in baselines.items()}
        # the restored images are encoded here; the split's own features are not needed
        measured = evaluate_input_compression(
            modules, self.datamodule, SPLIT, codec, quality, self.device, self.metrics
        )
        rows = []
        for seed, name in names.items():
            row = input_row(name, seed, codec, quality, measured, baselines[seed])
            self._save_statistics(name, measured.statistics[seed].statistics)
            write_json(self.results / f"{name}.json", row)
            rows.append(row)
        return rows

    # -- jobs ---------------------------------------------------------------------------------------

    def failure_record(self, job_name: str) -> Path:
        return self.jobs_dir / f"{job_name}.failed.json"

    def is_done(self, job: Job) -> bool:
        """Whether every row of ``job`` has its result (and its figures, for a model that has them)."""
        drawn = not job.options.get("figures") or all(
            (self.figures_of(job.name) / f).is_file() for f in (*FIGURES, "index.html")
        )
        return bool(job.rows) and drawn and all((self.results / f"{row}.json").is_file() for row in job.rows)

    def run(self, job: Job) -> None:
        """Run one job of ``spec.jobs()`` (not the collect step); on failure, record its one-line
        reason for its rows, then raise. An interrupted job records nothing: it resumes on re-run."""
        record = self.failure_record(job.name)
        record.unlink(missing_ok=True)
        runs = {JobKind.FEATURES: self._features_job, JobKind.BASELINE: self._baseline_job,
                JobKind.SQUEEZED: self._squeezed_job, JobKind.INPUT: self._input_job}  # fmt: skip
        try:
            runs[job.kind](job)
        except Interrupted:
            raise
        except Exception as error:
            write_json(record, {"job": job.name, "reason": failure_reason(error)})
            raise

    def _features_job(self, job: Job) -> None:
        plan = self.plan
        build_feature_cache(plan.model, plan.data, plan.optimizer, plan.training, plan.runtime,
                            ("train", "val", SPLIT))  # fmt: skip

    def _baseline_job(self, job: Job) -> None:
        self.baseline_row(job.options["seed"])

    def _input_job(self, job: Job) -> None:
        baselines = {seed: self._required(f"baseline_seed{seed}") for seed in self.spec.seeds}
        self.input_rows(job.options["codec"], job.options["quality"], baselines)

    def _squeezed_job(self, job: Job) -> None:
        seed, quantizer = job.options["seed"], quantizer_config(job.options["quantizer"])
        baseline = self._required(f"baseline_seed{seed}")
        self.squeezed_row(quantizer, baseline, self.figures_of(job.name) if job.options["figures"] else None)

    def _required(self, row: str) -> dict:
        """A row another job measured, refused with its job's reason when it has no result."""
        path = self.results / f"{row}.json"
        if path.is_file():
            return json.loads(path.read_text())
        record = self.failure_record(row)
        why = json.loads(record.read_text())["reason"] if record.is_file() else "it has not run"
        raise UserError(f"{row} has no result ({why})")

    def figures_of(self, name: str) -> Path:
        """The folder of a model's figures and page (``spec.figure_models``)."""
        return self.output_dir / "figures" / name


def failure_reason(error: BaseException) -> str:
    """A failed job's reason as one line: a user mistake's own message, else the exception's."""
    return one_line(str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}")
