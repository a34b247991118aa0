"""A sweep as plain values: what every model shares (``Plan``), its models, seeds and image codecs
(``SweepSpec``), and the graph of jobs they make (``Job``, ``JobKind``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

from embeddings_squeeze.config import (
    BASELINE_EPOCHS,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.models.quantizers import (
    quantizer_config,
    quantizer_values,
    reference_config,
    run_label,
)
from embeddings_squeeze.utils.input_compression import codecs

SPLIT = "test"  # the split every row is scored on
# the figures of the model the report shows, under the sweep's figures/
FIGURES = ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png")


class JobKind(StrEnum):
    """What a job does; ``engine/sweep/runner.py`` runs the measuring kinds, ``collect.py`` the last."""

    FEATURES = "features"  # the frozen backbone's features of the train, val and test splits, cached once
    BASELINE = "baseline"  # a seed's baseline, trained and scored, with its floor and oracle rows
    SQUEEZED = "squeezed"  # a squeezed model (a continuous reference among them), scored
    INPUT = "input"  # every seed's baseline on images sent with one codec at one quality
    COLLECT = "collect"  # the tables, the plot and the report


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
    kind: JobKind
    stage: int
    rows: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)

    @classmethod
    def from_values(cls, values: dict) -> Job:
        return cls(**{**values, "kind": JobKind(values["kind"]), "rows": tuple(values["rows"]),
                      "needs": tuple(values["needs"])})  # fmt: skip


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

    def figure_models(self) -> list[str]:
        """The models with figures of their own (first seed), in the order the report prefers to show
        them: each type's finest, the first type first, then the rest from fine to coarse."""
        quantizers = list(self.quantizers)
        types = list(dict.fromkeys(q.quantizer_type for q in quantizers))
        finest = [[q for q in quantizers if q.quantizer_type == kind][-1] for kind in types]
        ordered = [*finest, *[q for q in reversed(quantizers) if q not in finest]]
        return [f"{run_label(q)}_seed{self.seeds[0]}" for q in ordered]

    def jobs(self) -> list[Job]:
        """The job graph, in an order that runs each job after those it needs."""
        baselines = {seed: f"baseline_seed{seed}" for seed in self.seeds}
        jobs = [Job("features", JobKind.FEATURES, 0)]
        jobs += [Job(name, JobKind.BASELINE, 1, (name,), ("features",), {"seed": seed})
                 for seed, name in baselines.items()]  # fmt: skip
        for quantizer in self.models():
            for seed in self.seeds:
                name = f"{run_label(quantizer)}_seed{seed}"
                options = {"seed": seed, "quantizer": quantizer_values(quantizer),
                           "figures": name in self.figure_models()}  # fmt: skip
                jobs.append(Job(name, JobKind.SQUEEZED, 2, (name,), ("features", baselines[seed]), options))
        for codec in codecs():
            for quality in self.jpeg_qualities:
                configuration = f"{codec.lower()}_q{quality}"
                rows = tuple(f"{configuration}_seed{seed}" for seed in self.seeds)
                options = {"codec": codec, "quality": quality}
                jobs.append(Job(configuration, JobKind.INPUT, 2, rows, tuple(baselines.values()), options))
        jobs.append(Job("collect", JobKind.COLLECT, 3, needs=tuple(job.name for job in jobs)))
        return jobs
