"""Running trained models over a split: the comparison, the rate, the coder's model, the JPEG baseline.

Every loop here goes through ``evaluation_batches`` (device, eval mode, no gradients, progress),
and takes each image on its own, as a sender and a receiver do: batched matrix products can round
differently from single-image ones. A split served from the feature cache gives each image's
features as the sender computes them (``feature_cache``), so the backbone does not run again and the
scores are the same to the bit. Predictions are scored against each mask at its own size: the
logits are upsampled (bilinear) from the feature grid to the mask's size before the argmax.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.engine.baseline_cache import KeptBaseline
from embeddings_squeeze.engine.inference import evaluation_batches
from embeddings_squeeze.engine.rate import RateMeter
from embeddings_squeeze.models import SegmentationModule, SqueezedSegmentationModule
from embeddings_squeeze.models.segmentation_module import predicted_labels
from embeddings_squeeze.utils.codes import CodeAtlas
from embeddings_squeeze.utils.comparison import Comparison, Extremes, ScoredImage, degenerate, shares_backbone
from embeddings_squeeze.utils.input_compression import round_trip
from embeddings_squeeze.utils.iou import confusion_matrices
from embeddings_squeeze.utils.metrics import IoU, Metric, Scores, image_statistics
from embeddings_squeeze.utils.records import SplitScores, image_row
from embeddings_squeeze.utils.task_floor import TaskFloor


def receiver_masks(
    module: SegmentationModule, features: torch.Tensor, sizes: list[tuple[int, int]], sent=None
) -> list[torch.Tensor]:
    """One image's (1, C, h, w) frozen features -> its (H, W) predicted labels at each of ``sizes``,
    as the receiver gets them: a squeezed model's head sees what it decodes from what it sends
    (``sent``, when already computed)."""
    if isinstance(module, SqueezedSegmentationModule):
        sent = module.indices_of(features) if sent is None else sent[None]
        features = module.bottleneck.decode(sent)
    else:
        features, _, _ = module.squeeze(features)  # a baseline's hook: its standardisation
    return [predicted_labels(logits)[0].cpu() for logits in module.backbone.classify_at(features, sizes)]


@dataclass(frozen=True)
class CompareOptions:
    """What one comparison pass keeps beside the scores (see ``compare_models``)."""

    n_best: int = 0
    n_worst: int = 0
    record: Callable[[dict], None] = lambda _: None  # each image's scores, as soon as they are known
    rank_by: tuple[str, ...] = ("iou",)
    floor: TaskFloor | None = None
    # what is kept of the baseline's pass over this split: its statistics are read, not computed
    kept: KeptBaseline | None = None
    reference: SqueezedSegmentationModule | None = None
    metrics: tuple[Metric, ...] = (IoU(),)
    atlas: CodeAtlas | None = None
    share_backbone: bool = True  # False only in benchmarks: each model runs its own encoder


def compare_models(
    baseline: SegmentationModule,
    squeezed: SqueezedSegmentationModule,
    datamodule: SegmentationDataModule,
    split: str,
    device: torch.device,
    options: CompareOptions = CompareOptions(),
) -> Comparison:
    """Score the baseline, the squeezed model (and ``options.reference``) on every image of ``split``
    by every metric of ``options.metrics`` (IoU first); rank; measure the squeezed model's rate (and,
    given a ``floor``, the baseline's masks coded losslessly; given an ``atlas``, what each code of
    an index-sending quantizer stands for, and the ranked images keep their codes for code maps;
    given ``kept`` statistics of the baseline, its head runs only for images entering a ranking).

    The squeezed model's prediction is exactly what decode(encode(image)) gives. ``rank_by``: the
    rankings to keep, from one pass: a metric's name ranks by the squeezed model's per-image value,
    'delta_' and a name by squeezed minus baseline ('delta' is 'delta_iou'), so the worst images are those
    where the bottleneck loses most. When the models share their frozen encoder, it runs once per
    image for all.
    """
    scoring = ComparisonPass(baseline, squeezed, datamodule.files[split], device, options)
    loader = datamodule.evaluation_dataloader(split)
    for inputs, masks, native_masks, positions in evaluation_batches(
        scoring.models.values(), loader, device, "comparing"
    ):
        for image_input, mask, target, position in zip(inputs, masks, native_masks, positions.tolist()):
            scoring.image(image_input[None].to(device), mask, target, position)
    return scoring.result()


class ComparisonPass:
    """The accumulators of one comparison: scores, rankings, rate, floor and atlas, fed an image at a time."""

    def __init__(self, baseline, squeezed, files, device, options: CompareOptions):
        reference = options.reference
        self.models = {
            "baseline": baseline,
            "squeezed": squeezed,
            **({"reference": reference} if reference else {}),
        }
        self.squeezed, self.files, self.device, self.options = squeezed, files, device, options
        self.shared = options.share_backbone and all(
            shares_backbone(squeezed, m) for m in self.models.values()
        )
        self.comparison = Comparison(
            classes=squeezed.classes, models=tuple(self.models), metrics=options.metrics
        )
        self.rankings = {ranking: Extremes(options.n_best, options.n_worst) for ranking in options.rank_by}
        self.rate = RateMeter(squeezed)
        # the baseline's statistics where kept (then it runs only for the few images that need its labels)
        self.kept = options.kept if options.kept is not None and options.kept.statistics is not None else None
        self.running = [name for name in self.models if not (name == "baseline" and self.kept is not None)]

    def image(self, inputs: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, position: int) -> None:
        """Score one image (``inputs``: (1, 3, S, S) pixels or its cached features; ``mask`` at the
        input size, ``target`` at its own) with every model (the baseline's statistics read where
        kept)."""
        options, num_classes = self.options, self.squeezed.num_classes
        sizes = [tuple(target.shape), tuple(mask.shape)]  # the mask's own size, the input size
        squeezed_features = self.squeezed.features_of(inputs, one_by_one=True)
        if not self.shared and squeezed_features is inputs:
            raise ValueError("models with frozen encoders of their own cannot share cached features")
        sent = self.squeezed.indices_of(squeezed_features)[0]
        self.rate.update(sent[None], [sizes[0]])
        predictions = {
            name: self._predict(name, inputs, squeezed_features, sizes, sent) for name in self.running
        }
        statistics = {
            name: image_statistics(options.metrics, p[0], target, num_classes)
            for name, p in predictions.items()
        }
        counts = {
            name: confusion_matrices(p[1][None], mask[None], num_classes)[0]
            for name, p in predictions.items()
        }
        if self.kept is not None:
            statistics["baseline"], counts["baseline"] = self.kept.image(position)
        values = self.comparison.add(statistics, counts)

        def baseline_labels() -> torch.Tensor:  # at the mask's size; computed here when kept
            if "baseline" not in predictions:
                predictions["baseline"] = self._predict(
                    "baseline", inputs, squeezed_features, sizes[:1], sent
                )
            return predictions["baseline"][0]

        if options.floor is not None:
            options.floor.update(baseline_labels(), target)
        codes = sent[..., 0].cpu().numpy() if options.atlas is not None else None
        if options.atlas is not None:
            pixels = self.files.native_image(position) if options.atlas.wants_patches(codes) else None
            options.atlas.add(codes, target.numpy(), pixels)
        self._record(position, values)
        if not math.isnan(values["iou"]["squeezed"]):  # an image without labelled pixels is not ranked
            self._rank(position, values, target, codes, baseline_labels, predictions["squeezed"][0])

    def _predict(self, name: str, inputs, squeezed_features, sizes: list, sent) -> list[torch.Tensor]:
        """Model ``name``'s labels at each of ``sizes``, from the squeezed model's features where
        they share an encoder."""
        model = self.models[name]
        own = squeezed_features if self.shared else model.features_of(inputs, one_by_one=True)
        return receiver_masks(model, own, sizes, sent if model is self.squeezed else None)

    def _record(self, position: int, values: dict) -> None:
        self.options.record(image_row(position, self.files.image_ids[position], values))

    def _rank(
        self, position, values: dict, target, codes, baseline_labels: Callable, squeezed_labels
    ) -> None:
        """Offer the image to every ranking; ``baseline_labels()`` gives the baseline's labels (run
        only for an image that enters one)."""

        def make_item():  # only for an image that enters a ranking
            return ScoredImage(
                position=position,
                image_id=self.files.image_ids[position],
                baseline_iou=values["iou"]["baseline"],
                squeezed_iou=values["iou"]["squeezed"],
                image=self.files.native_image(position),
                target=target.to(torch.uint8).numpy(),
                baseline_pred=baseline_labels().to(torch.uint8).numpy(),
                squeezed_pred=squeezed_labels.to(torch.uint8).numpy(),
                codes=codes,
            )

        for ranking, extremes in self.rankings.items():
            extremes.offer(ranking_score(ranking, values), position, make_item)

    def result(self) -> Comparison:
        comparison = self.comparison
        comparison.rankings = {ranking: (ext.best(), ext.worst()) for ranking, ext in self.rankings.items()}
        comparison.rate = self.rate.report()
        comparison.task_floor = self.options.floor.report() if self.options.floor is not None else {}
        comparison.atlas = self.options.atlas
        return comparison


def ranking_score(ranking: str, values: dict[str, dict[str, float]]) -> float:
    """An image's score under ``ranking``: the VQ model's value of a metric, or ('delta_' and a metric;
    'delta' alone is IoU) its value minus the baseline's."""
    if ranking == "delta":
        ranking = "delta_iou"
    metric = ranking.removeprefix("delta_")
    by_model = values[metric]
    return (
        by_model["squeezed"] - by_model["baseline"] if ranking.startswith("delta_") else by_model["squeezed"]
    )


def prepare_coder(module: SqueezedSegmentationModule, loader, device: torch.device) -> None:
    """Build a trained module's coder model (``Quantizer.prepare_coder``); the training split in
    ``loader`` is run through the model only if the quantizer's model needs it."""

    def sent_batches():
        for batch in evaluation_batches(module, loader, device, "coding the training split"):
            yield module.indices_of(module.features_of(batch[0].to(device), one_by_one=True))

    module.bottleneck.prepare_coder(sent_batches())


def evaluate_rate(
    module: SqueezedSegmentationModule, datamodule: SegmentationDataModule, split: str, device
) -> dict:
    """The rate table of a squeezed ``module`` on ``split``, with real payload sizes."""
    meter = RateMeter(module)
    loader = datamodule.evaluation_dataloader(split)
    for inputs, _, native_masks, _ in evaluation_batches(module, loader, device, "measuring payload sizes"):
        sent = module.indices_of(module.features_of(inputs.to(device), one_by_one=True))
        meter.update(sent, [tuple(target.shape) for target in native_masks])
    return meter.report()


@dataclass(frozen=True)
class BaselinePass:
    """The baseline's scores on a split with the per-image statistics behind them and, from the same
    pass, the task floor (``TaskFloor.report``), the grid oracles' (N, C, C) per-image counts and its
    own at the input size (a squeezed model's comparison reads them: ``KeptBaseline``)."""

    scores: SplitScores
    statistics: Scores
    floor: dict
    oracle_confusions: dict[int, torch.Tensor]
    input_confusion: torch.Tensor


@dataclass(frozen=True)
class CodecPass:
    """Baselines (by seed) on images sent with one codec at one quality: the files' mean size and fixed
    part, and per seed its scores with the per-image statistics behind them."""

    payload_bytes_mean: float
    header_bytes: float
    scores: dict[int, SplitScores]
    statistics: dict[int, Scores]


def evaluate_baseline(
    baseline: SegmentationModule,
    datamodule: SegmentationDataModule,
    split: str,
    device,
    metrics: tuple[Metric, ...] = (IoU(),),
) -> BaselinePass:
    """The baseline's scores on ``split`` by ``metrics`` and, from the same pass, the task floor with
    its references (its own masks, coded losslessly, are the ones scored here) and each image's counts
    at the input size."""
    floor = TaskFloor(baseline.class_names, reference=True)
    scores = Scores(list(metrics), baseline.class_names)
    loader = datamodule.evaluation_dataloader(split)
    input_counts = []
    batches = evaluation_batches(baseline, loader, device, "scoring the baseline")
    for inputs, masks, native_masks, _ in batches:
        for image_input, mask, target in zip(inputs, masks, native_masks):
            features = baseline.features_of(image_input[None].to(device), one_by_one=True)
            sizes = [tuple(target.shape), tuple(mask.shape)]
            prediction, at_input = receiver_masks(baseline, features, sizes)
            scores.add(prediction, target)
            floor.update(prediction, target)
            input_counts.append(confusion_matrices(at_input[None], mask[None], baseline.num_classes)[0])
    oracles = {cells: torch.stack(counts) for cells, counts in floor.oracle_confusions.items()}
    return BaselinePass(split_scores(scores), scores, floor.report(), oracles, torch.stack(input_counts))


def split_scores(scores: Scores) -> SplitScores:
    """A model's results on a split, and whether its predictions are degenerate (from their summed
    counts)."""
    counts = torch.stack(scores.statistics["confusion"]).sum(dim=0)
    return SplitScores(scores.results(), degenerate(counts, scores.class_names))


def evaluate_input_compression(
    baselines: dict[int, SegmentationModule],
    datamodule: SegmentationDataModule,
    split: str,
    codec: str,
    quality: int,
    device: torch.device,
    metrics: tuple[Metric, ...] = (IoU(),),
) -> CodecPass:
    """Baselines (by seed) on images sent as ``codec`` at ``quality`` (each coded at the smaller of
    its own size and the model's input size, ``utils/input_compression.py``), scored at each mask's
    own size: the files' mean size and fixed part, and per baseline its scores and (N, C, C)
    per-image counts. Baselines that share their frozen encoder see each restored image's features
    computed once."""
    first = next(iter(baselines.values()))
    files = datamodule.files[split]
    shared = all(shares_backbone(first, baseline) for baseline in baselines.values())
    scores = {seed: Scores(list(metrics), first.class_names) for seed in baselines}
    sizes, headers = [], []
    loader = datamodule.evaluation_dataloader(split)
    for _, _, native_masks, positions in evaluation_batches(
        baselines.values(), loader, device, f"{codec} q{quality}"
    ):
        for target, position in zip(native_masks, positions.tolist()):
            native = files.native_image(position)
            restored, size, header = round_trip(native, datamodule.image_transform, codec, quality)
            sizes.append(size)
            headers.append(header)
            features = first.backbone.features_one_by_one(restored[None].to(device))
            for seed, baseline in baselines.items():
                if not shared:
                    features = baseline.backbone.features_one_by_one(restored[None].to(device))
                (prediction,) = receiver_masks(baseline, features, [tuple(target.shape)])
                scores[seed].add(prediction, target)
    results = {seed: split_scores(seed_scores) for seed, seed_scores in scores.items()}
    return CodecPass(float(np.mean(sizes)), float(np.mean(headers)), results, scores)
