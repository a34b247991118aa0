"""A comparison's results as typed records: a value with its interval, a model's scores, a paired
difference, a split's result and the report a comparison writes; and one image's scores.

The console (``utils/summary_text.py``), the page (``utils/pages.py``) and the sweep's rows
(``engine/sweep/rows.py``) read these fields; ``as_dict`` is the one place the summary JSON's flat keys
(``squeezed_miou_ci``, ``miou_difference_p_holm``, ...) are built, ``image_row`` and ``score_fields``
the one place for the columns of ``scores_<split>.csv``.
"""

from __future__ import annotations

from dataclasses import dataclass

from embeddings_squeeze.config import CHECKPOINT_FLAGS
from embeddings_squeeze.utils import intervals

# the models a comparison can hold, in display order, as the console names them
TITLES = {"baseline": "baseline", "squeezed": "VQ", "reference": "continuous"}
# (first, second) -> the summary key of first minus second, for a metric's key
DIFFERENCE_KEYS = {
    ("squeezed", "baseline"): "{}_difference",
    ("squeezed", "reference"): "{}_difference_vs_reference",
    ("reference", "baseline"): "reference_{}_difference",
}


@dataclass(frozen=True)
class Estimate:
    """A value with its 95 % interval (``bounds``; None when none is stated, ``note`` says why)."""

    value: float
    bounds: tuple[float, float] | None = None  # (low, high)
    note: str | None = None

    @classmethod
    def of(cls, found: intervals.Interval) -> Estimate:
        return cls(found.estimate, found.bounds(), found.note)

    def text(self, signed: bool = False) -> str:
        """``0.7012 [0.68, 0.72]``; signed: ``+0.0123 [-0.0100, +0.0300]``."""
        shown = f"{self.value:+.4f}" if signed else f"{self.value:.4f}"
        return f"{shown} {intervals.bounds_text(self.bounds, signed=signed)}"

    def columns(self, key: str) -> dict:
        bounds = None if self.bounds is None else list(self.bounds)
        return {key: self.value, f"{key}_ci": bounds, f"{key}_note": self.note}


@dataclass(frozen=True)
class MetricScore:
    """One metric of one model on a split: ``key`` is its column name (``miou`` for IoU), ``name`` the
    metric's own; ``per_class`` its value per class, where the metric has one."""

    name: str
    key: str
    estimate: Estimate
    per_class: dict[str, float] | None = None

    def columns(self) -> dict:
        per_class = {} if self.per_class is None else {f"class_{self.name}": self.per_class}
        return {**self.estimate.columns(self.key), **per_class}


class _ByKey:
    """Scores looked up by column key (``scores["miou"]``), IoU's per-class values, the others' values."""

    metrics: tuple[MetricScore, ...]

    def __getitem__(self, key: str) -> Estimate:
        for metric in self.metrics:
            if metric.key == key:
                return metric.estimate
        raise KeyError(f"no score {key!r}")

    @property
    def class_iou(self) -> dict[str, float]:
        return next(metric.per_class for metric in self.metrics if metric.name == "iou")

    def other_values(self) -> dict[str, float]:
        """The value of every metric beyond IoU, by its column key."""
        return {metric.key: metric.estimate.value for metric in self.metrics if metric.name != "iou"}


@dataclass(frozen=True)
class SplitScores(_ByKey):
    """A model's scores on a split by every metric (IoU first), at each mask's own size, and why its
    predictions carry no information, if they do not."""

    metrics: tuple[MetricScore, ...]
    degenerate: str | None = None


@dataclass(frozen=True)
class ModelScores(_ByKey):
    """A model's scores in a comparison: every metric at each mask's own size, the mIoU at the input
    size, the mean per-image IoU and why its predictions carry no information, if they do not."""

    role: str
    metrics: tuple[MetricScore, ...]
    miou_input_size: float
    mean_image_iou: float
    degenerate: str | None = None

    def columns(self) -> dict:
        columns = {}
        for metric in self.metrics:
            columns.update(metric.columns())
        columns.update(miou_input_size=self.miou_input_size, mean_image_iou=self.mean_image_iou)
        return {f"{self.role}_{key}": value for key, value in columns.items()}


@dataclass(frozen=True)
class Difference:
    """``first`` minus ``second`` in the metric ``key``, paired on the same images: the estimate with
    its interval, its two-sided p-value and that p-value after Holm's adjustment over its family."""

    first: str
    second: str
    key: str
    estimate: Estimate
    p_value: float | None
    p_holm: float | None

    @property
    def name(self) -> str:
        return DIFFERENCE_KEYS[self.first, self.second].format(self.key)

    @property
    def significant(self) -> bool | None:
        return intervals.significant(self.p_holm)

    def text(self) -> str:
        """The difference, its interval and its standing after Holm's adjustment."""
        standing = intervals.verdict(self.p_holm, self.estimate.note)
        return f"{self.estimate.text(signed=True)}  ({standing})"


@dataclass(frozen=True)
class ComparisonResult:
    """Models scored on the same images of a split (``utils/comparison.py``): each one's scores and
    the paired differences, Holm-adjusted together."""

    images: int
    images_scored: int
    metrics: tuple[str, ...]  # the metrics' names, IoU first
    models: dict[str, ModelScores]
    differences: tuple[Difference, ...]
    mean_image_iou_difference: float
    warnings: tuple[str, ...] = ()

    def difference(self, first: str, second: str, key: str = "miou") -> Difference:
        for difference in self.differences:
            if (difference.first, difference.second, difference.key) == (first, second, key):
                return difference
        raise KeyError(f"no difference {first} - {second} in {key!r}")

    @property
    def multiplicity(self) -> str:
        return f"Holm over the {len(self.differences)} differences of this comparison"

    def notes(self) -> list[str]:
        """Why intervals are not stated, each reason once."""
        estimates = [m.estimate for model in self.models.values() for m in model.metrics]
        estimates += [difference.estimate for difference in self.differences]
        return sorted({estimate.note for estimate in estimates if estimate.note})

    def as_dict(self) -> dict:
        """The flat summary (``summary_<split>.json``)."""
        summary = {"images": self.images, "images_scored": self.images_scored, "metrics": list(self.metrics)}
        for model in self.models.values():
            summary.update(model.columns())
        for difference in self.differences:
            summary.update(difference.estimate.columns(difference.name))
            summary[f"{difference.name}_p"] = difference.p_value
        for difference in self.differences:
            summary[f"{difference.name}_p_holm"] = difference.p_holm
            summary[f"{difference.name}_significant"] = difference.significant
        summary["multiplicity"] = self.multiplicity
        summary["mean_image_iou_difference"] = self.mean_image_iou_difference
        summary["warnings"] = list(self.warnings)
        summary.update({f"{role}_degenerate": model.degenerate for role, model in self.models.items()})
        return summary


@dataclass(frozen=True)
class ComparisonReport:
    """What a comparison reports: its result on ``split``, the checkpoints compared (by role), the
    squeezed model's rate table (column keys in ``utils/columns.py``), the task floor (None: not
    measured), what its codes stand for, and every warning."""

    result: ComparisonResult
    split: str
    checkpoints: dict[str, str]
    rate: dict
    task_floor: dict | None = None
    codes: dict | None = None
    extra_warnings: tuple[str, ...] = ()  # beyond the result's own (a baseline stopped at its cap)
    paired_by_training: bool = True  # False: compared with --unpaired, trained on different data or splits

    @property
    def pairing(self) -> str:
        """How its differences are paired, as its tables say it."""
        unpaired = "" if self.paired_by_training else " (but not by training: see the warning)"
        return f"differences paired on the same images{unpaired}"

    @property
    def warnings(self) -> tuple[str, ...]:
        return (*self.result.warnings, *self.extra_warnings)

    def as_dict(self) -> dict:
        summary = {
            **self.result.as_dict(),
            "split": self.split,
            **{CHECKPOINT_FLAGS[role].removeprefix("--"): path for role, path in self.checkpoints.items()},
            "rate": self.rate,
            "paired_by_training": self.paired_by_training,
        }
        if self.task_floor is not None:
            summary["task_floor"] = self.task_floor
        summary["warnings"] = list(self.warnings)
        if self.codes is not None:
            summary["codes"] = self.codes
        return summary


def score_fields(metrics: tuple[str, ...], roles: tuple[str, ...]) -> list[str]:
    """The columns of scores_<split>.csv: per metric (by name), each model's value and VQ minus
    baseline."""
    fields = ["position", "image_id"]
    for metric in metrics:
        fields += [*(f"{role}_{metric}" for role in roles), f"{metric}_difference"]
    return fields


def image_row(position: int, image_id: str, values: dict[str, dict[str, float]]) -> dict:
    """One image's row of scores_<split>.csv from its ``values``: per metric name, per role."""
    row = {"position": position, "image_id": image_id}
    for metric, by_role in values.items():
        row.update({f"{role}_{metric}": value for role, value in by_role.items()})
        row[f"{metric}_difference"] = by_role["squeezed"] - by_role["baseline"]
    return row
