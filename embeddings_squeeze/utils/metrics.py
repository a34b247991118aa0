"""Segmentation metrics beyond IoU, each defined once: additive statistics of one image, and the value
of statistics summed over images.

Dice and pixel accuracy are computed here rather than with torchmetrics (the tests check them against
its ``multiclass_f1_score`` and ``multiclass_accuracy``) because the intervals and the paired
differences need each image's additive statistics, not a metric object's running state.

Summing statistics before taking the value is how a split's score is formed (the dataset IoU sums
confusion counts first), how intervals see each image's part in it (``utils/intervals.py``) and how two
models are paired on the same images. Metrics that read the same statistics (IoU, Dice, pixel
accuracy: the confusion counts) share one computation, by ``statistics_key``.

A metric of your own: subclass ``Metric`` (its ``statistics`` and ``value``; ``class_values`` when it
has one value per class), then ``register_metric`` it in code that calls the engine, or declare it as
an entry point of ``embeddings_squeeze.metrics`` for the command line; ``--metrics`` then offers it,
and the summary, ``scores_<split>.csv``, the sweep's tables and the report carry it. IoU is always on.
"""

from __future__ import annotations

import torch

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.registry import Registry
from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.iou import class_iou, confusion_matrices
from embeddings_squeeze.utils.records import Estimate, MetricScore

BOUNDARY_TOLERANCE = 2  # pixels: a boundary pixel counts as found within this chessboard distance


class Metric:
    """A metric: ``name`` (its --metrics value and column prefix), ``title`` (for people); built with
    no arguments."""

    name: str
    title: str
    statistics_key: str  # metrics with the same key read the same statistics, computed once per image
    bounds: tuple[float, float] = (0.0, 1.0)  # the values it can take: its intervals stay inside

    def statistics(self, prediction: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Additive statistics of one image's (H, W) prediction against its (H, W) target."""
        raise NotImplementedError

    def class_values(self, summed: torch.Tensor) -> torch.Tensor | None:
        """(..., C) the value per class of summed statistics, NaN for a class in neither map (None:
        the metric has no per-class value)."""
        return None

    def value(self, summed: torch.Tensor) -> torch.Tensor:
        """(...) the metric of summed statistics (..., *shape): by default the mean over the classes
        present, as mIoU is."""
        return self.class_values(summed).nanmean(dim=-1)

    def truth_counts(self, statistics: torch.Tensor) -> torch.Tensor:
        """(N, C) how much of each class each image's ground truth holds, from its (N, ...)
        statistics (``utils/intervals.py`` withholds intervals over classes too rare to vary); by
        default 1 where the image has a value for the class at all."""
        return (~torch.isnan(self.class_values(statistics))).long()


class ConfusionMetric(Metric):
    """A metric of the (C, C) confusion counts (rows: ground truth), ignored pixels left out."""

    statistics_key = "confusion"

    def statistics(self, prediction, target, num_classes):
        return confusion_matrices(prediction[None], target[None], num_classes)[0]

    def truth_counts(self, statistics):
        return statistics.sum(dim=-1)  # rows: the ground truth


class IoU(ConfusionMetric):
    name, title = "iou", "IoU"

    def class_values(self, summed):
        return class_iou(summed)


class Dice(ConfusionMetric):
    """Dice (the F1 score) per class: 2 TP / (2 TP + FP + FN)."""

    name, title = "dice", "Dice"

    def class_values(self, summed):
        true_positive = summed.diagonal(dim1=-2, dim2=-1).double()
        both = (summed.sum(dim=-1) + summed.sum(dim=-2)).double()  # 2 TP + FP + FN
        return torch.where(both > 0, 2 * true_positive / both.clamp(min=1), torch.nan)


class PixelAccuracy(ConfusionMetric):
    """The share of labelled pixels predicted right."""

    name, title = "pixel_accuracy", "pixel accuracy"

    def value(self, summed):
        labelled = summed.sum(dim=(-2, -1)).double()
        right = summed.diagonal(dim1=-2, dim2=-1).sum(dim=-1).double()
        return torch.where(labelled > 0, right / labelled.clamp(min=1), torch.nan)


class BoundaryF(Metric):
    """The pooled boundary F-score per class: a class's boundary pixels in the prediction that lie
    within ``tolerance`` pixels (chessboard distance) of its boundary in the ground truth (precision),
    and the other way round (recall), both counted over the whole split before F is taken. (Csurka et
    al., BMVC 2013, average a per-image F instead; pooling keeps the statistics additive, like the
    confusion counts, and weighs images by their boundary length.) A boundary pixel has a 4-neighbour
    of another label (image edges are none); in the ground truth an ignored band (VOC's outlines, the
    pet border in binary mode) counts as another label, so the pixels along it are the object's edge,
    and a predicted edge inside the band is judged by its distance to them."""

    name, title = "boundary_f", "pooled boundary F"
    statistics_key = "boundary"

    def __init__(self, tolerance: int = BOUNDARY_TOLERANCE):
        self.tolerance = tolerance

    def statistics(self, prediction, target, num_classes):
        """(4, C): predicted boundary pixels, those matched, true boundary pixels, those matched."""
        # as bytes (every label and the ignored value fit): the comparisons run 1.3x faster
        prediction, target = prediction.to(torch.uint8), target.to(torch.uint8)
        predicted = _boundaries(prediction, num_classes)
        true = _boundaries(target, num_classes)
        near_true = _near(true, self.tolerance)
        near_predicted = _near(predicted, self.tolerance)
        counts = [predicted, predicted & near_true, true, true & near_predicted]
        return torch.stack([mask.flatten(1).sum(dim=1) for mask in counts])

    def truth_counts(self, statistics):
        return statistics[:, 2]  # true boundary pixels

    def class_values(self, summed):
        predicted, found, true, recalled = summed.double().unbind(dim=-2)
        precision = found / predicted.clamp(min=1)
        recall = recalled / true.clamp(min=1)
        score = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return torch.where(predicted + true > 0, score, torch.nan)


def _boundaries(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, H, W): the pixels of each class with a 4-neighbour of another label (image edges are not
    boundaries)."""
    differs = torch.zeros_like(labels, dtype=torch.bool)
    for axis in (-1, -2):  # each pair of neighbours along an axis, compared once, marks both pixels
        size = labels.shape[axis]
        pairs = labels.narrow(axis, 1, size - 1) != labels.narrow(axis, 0, size - 1)
        differs.narrow(axis, 1, size - 1).logical_or_(pairs)
        differs.narrow(axis, 0, size - 1).logical_or_(pairs)
    classes = torch.arange(num_classes, dtype=labels.dtype, device=labels.device).view(-1, 1, 1)
    return (labels[None] == classes) & differs[None]


def _near(mask: torch.Tensor, distance: int) -> torch.Tensor:
    """Boolean ``mask`` (..., H, W) dilated by ``distance`` pixels (chessboard): shifted copies OR-ed
    along the rows, then along the columns (a square is separable; 4x faster than max-pooling floats)."""
    near = mask
    for axis in (-1, -2):
        size = near.shape[axis]
        spread = near.clone()
        for step in range(1, min(distance, size - 1) + 1):
            spread.narrow(axis, step, size - step).logical_or_(near.narrow(axis, 0, size - step))
            spread.narrow(axis, 0, size - step).logical_or_(near.narrow(axis, step, size - step))
        near = spread
    return near


METRICS = Registry("--metrics", "embeddings_squeeze.metrics", (IoU, Dice, PixelAccuracy, BoundaryF))
register_metric = METRICS.register  # offer a Metric subclass to --metrics; works as a class decorator


def metric_named(name: str) -> Metric:
    """The metric ``--metrics`` calls ``name`` (an installed package's entry point included)."""
    return METRICS.find(name)()


def chosen(names) -> list[Metric]:
    """IoU, then the metrics ``names`` asks for, each once; an unknown name is refused."""
    return [metric_named(name) for name in dict.fromkeys(("iou", *names))]


def check_ranking(ranking: str, metrics: list[Metric]) -> None:
    """Refuse a --rank_by that is neither a chosen metric nor 'delta_' and one ('delta': IoU's)."""
    allowed = ["delta", *(f"{prefix}{metric.name}" for prefix in ("", "delta_") for metric in metrics)]
    if ranking not in allowed:
        raise UserError(
            f"--rank_by {ranking!r} is not a metric of this comparison; choose from {', '.join(allowed)}"
        )


class Scores:
    """One model's per-image statistics for ``metrics`` on a split, and what they amount to."""

    def __init__(self, metrics: list[Metric], class_names: list[str]):
        self.metrics = metrics
        self.class_names = list(class_names)
        self.statistics: dict[str, list[torch.Tensor]] = {metric.statistics_key: [] for metric in metrics}

    def add(self, prediction: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
        """Score one image's (H, W) prediction against its target; its value of every metric (NaN
        when it has no labelled pixel)."""
        return self.add_statistics(image_statistics(self.metrics, prediction, target, len(self.class_names)))

    def add_statistics(self, computed: dict[str, torch.Tensor]) -> dict[str, float]:
        """Add one image's statistics (by ``statistics_key``); its value of every metric."""
        for key, statistics in computed.items():
            self.statistics[key].append(statistics)
        return {
            metric.name: metric.value(computed[metric.statistics_key][None]).item() for metric in self.metrics
        }

    def stacked(self, metric: Metric) -> torch.Tensor:
        """(N, ...) the per-image statistics ``metric`` reads."""
        return torch.stack(self.statistics[metric.statistics_key])

    def results(self) -> tuple[MetricScore, ...]:
        """Per metric: its value on the split with its 95 % interval (``utils/intervals.py``; none
        stated without images, the note says why) and its value per class where it has one."""
        results = []
        for metric in self.metrics:
            if not self.statistics[metric.statistics_key]:
                results.append(
                    MetricScore(metric.name, key_of(metric), Estimate(float("nan"), note="no images"))
                )
                continue
            statistics = self.stacked(metric)
            per_class = metric.class_values(statistics.sum(dim=0))
            per_class = None if per_class is None else dict(zip(self.class_names, per_class.tolist()))
            found = Estimate.of(intervals.interval([statistics], metric))
            results.append(MetricScore(metric.name, key_of(metric), found, per_class))
        return tuple(results)

    def report(self) -> dict:
        """The results as columns: ``miou`` for IoU (else the metric's name), its interval (``_ci``)
        and note (``_note``), its values per class (``class_<name>``)."""
        report = {}
        for result in self.results():
            report.update(result.columns())
        return report


def image_statistics(
    metrics: list[Metric], prediction: torch.Tensor, target: torch.Tensor, num_classes: int
) -> dict[str, torch.Tensor]:
    """One image's statistics for ``metrics``, each ``statistics_key`` computed once."""
    computed = {}
    for metric in metrics:
        if metric.statistics_key not in computed:
            computed[metric.statistics_key] = metric.statistics(prediction, target, num_classes).cpu()
    return computed


def key_of(metric: Metric) -> str:
    """The metric's name in summaries and tables: ``miou`` for IoU (the mean over classes), else its name."""
    return "miou" if metric.name == "iou" else metric.name
