"""Running trained models over a split: the comparison, the rate, the code histogram, the JPEG baseline.

Every loop here goes through ``evaluation_batches`` (device, eval mode, no gradients, progress).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from embeddings_squeeze.data.segmentation import denormalize
from embeddings_squeeze.engine.inference import evaluation_batches
from embeddings_squeeze.engine.rate import RateMeter
from embeddings_squeeze.models import SegmentationModule, VQSegmentationModule
from embeddings_squeeze.utils.comparison import Comparison, Extremes, ScoredImage, shares_backbone
from embeddings_squeeze.utils.input_compression import round_trip
from embeddings_squeeze.utils.iou import class_iou, confusion_matrices, mean_iou, per_image_iou
from embeddings_squeeze.utils.task_floor import TaskFloor


def compare_models(
    baseline: SegmentationModule,
    vq: VQSegmentationModule,
    loader,
    image_ids: list[str],
    n_best: int,
    n_worst: int,
    device: torch.device,
    record: Callable[[dict], None],
    share_backbone: bool = True,
    rank_by: tuple[str, ...] = ("iou",),
    floor: TaskFloor | None = None,
) -> Comparison:
    """Score both models on every image of ``loader``; rank them; measure the VQ rate (and, given
    a ``floor``, the baseline's masks coded losslessly).

    Each image runs on its own, the VQ model through ``encode_image`` and ``decode_mask``, so its
    prediction is exactly what decode(encode(image)) gives, whatever the loader's batch size.
    ``rank_by``: the rankings to keep, from one pass: 'iou' ranks by VQ IoU; 'delta' by VQ IoU
    minus baseline IoU, so the worst images are those where the bottleneck loses most. When both
    models share their frozen encoder, it runs once per image for both (unless ``share_backbone``
    is False, which only benchmarks use).
    """
    num_classes = vq.num_classes
    shared = share_backbone and shares_backbone(baseline, vq)
    result = Comparison(
        classes=vq.classes,
        baseline_confusion=torch.zeros(num_classes, num_classes, dtype=torch.long),
        vq_confusion=torch.zeros(num_classes, num_classes, dtype=torch.long),
    )
    rankings = {ranking: Extremes(n_best, n_worst) for ranking in rank_by}
    rate = RateMeter(vq)
    mean, std = vq.backbone.mean, vq.backbone.std
    for images, masks, positions in evaluation_batches(
        (baseline, vq), loader, device, "comparing baseline and VQ"
    ):
        baseline_preds, vq_preds, batch_indices = [], [], []
        for image in images:  # one at a time, as encode and decode handle images
            vq_features, indices = vq.encode_image(image)
            if shared:
                baseline_features = vq_features
            else:
                baseline_features = baseline.backbone.features(image.unsqueeze(0).to(device))
            size = image.shape[-2:]
            baseline_preds.append(baseline.logits_from_features(baseline_features, size).argmax(dim=1)[0])
            vq_preds.append(vq.decode_mask(indices))
            batch_indices.append(indices)
        baseline_pred, vq_pred = torch.stack(baseline_preds).cpu(), torch.stack(vq_preds).cpu()
        rate.update(torch.stack(batch_indices))
        baseline_confusion = confusion_matrices(baseline_pred, masks, num_classes)
        vq_confusion = confusion_matrices(vq_pred, masks, num_classes)
        result.baseline_confusion += baseline_confusion.sum(dim=0)
        result.vq_confusion += vq_confusion.sum(dim=0)
        baseline_iou = per_image_iou(baseline_confusion).tolist()
        vq_iou = per_image_iou(vq_confusion).tolist()
        for j, position in enumerate(positions.tolist()):
            result.total_images += 1
            if floor is not None:
                floor.update(baseline_pred[j], masks[j])
            record(
                {
                    "position": position,
                    "image_id": image_ids[position],
                    "baseline_iou": baseline_iou[j],
                    "vq_iou": vq_iou[j],
                    "iou_difference": vq_iou[j] - baseline_iou[j],
                }
            )
            if math.isnan(vq_iou[j]):  # no labelled pixel: nothing to rank
                continue
            result.scored_images += 1
            result.baseline_iou_sum += baseline_iou[j]
            result.vq_iou_sum += vq_iou[j]

            def make_item(j=j, position=position):
                return ScoredImage(
                    position=position,
                    image_id=image_ids[position],
                    baseline_iou=baseline_iou[j],
                    vq_iou=vq_iou[j],
                    image=denormalize(images[j], mean, std).permute(1, 2, 0).numpy(),
                    target=masks[j].to(torch.uint8).numpy(),
                    baseline_pred=baseline_pred[j].to(torch.uint8).numpy(),
                    vq_pred=vq_pred[j].to(torch.uint8).numpy(),
                )

            scores = {"iou": vq_iou[j], "delta": vq_iou[j] - baseline_iou[j]}
            for ranking, extremes in rankings.items():
                extremes.offer(scores[ranking], position, make_item)
    result.rankings = {ranking: (ext.best(), ext.worst()) for ranking, ext in rankings.items()}
    result.rate = rate.report()
    result.task_floor = floor.report() if floor is not None else {}
    return result


def prepare_coder(module: VQSegmentationModule, loader, device: torch.device) -> None:
    """Build a trained module's coder model (``Quantizer.prepare_coder``); the training split in
    ``loader`` is run through the model only if the quantizer's model needs it."""

    def sent_batches():
        for batch in evaluation_batches(module, loader, device, "coding the training split"):
            yield module.indices_of(module.features_of(batch[0].to(device), one_by_one=True))

    module.bottleneck.prepare_coder(sent_batches())


def evaluate_rate(module, loader, device: torch.device) -> dict:
    """The rate table of a squeezed ``module`` on ``loader``'s split, with real payload sizes."""
    meter = RateMeter(module)
    for batch in evaluation_batches(module, loader, device, "measuring payload sizes"):
        meter.update(module.indices_of(module.features_of(batch[0].to(device), one_by_one=True)))
    return meter.report()


def evaluate_task_floor(baseline: SegmentationModule, loader, device: torch.device) -> dict:
    """The task floor with its references (``TaskFloor``) and the baseline's scores on the same pass.

    Each image's features are computed on its own, as in ``compare_models``, so the masks coded
    here are the ones the baseline is scored on there.
    """
    floor = TaskFloor(baseline.class_names, reference=True)
    confusion = torch.zeros(baseline.num_classes, baseline.num_classes, dtype=torch.long)
    for images, masks, _ in evaluation_batches(baseline, loader, device, "coding masks (task floor)"):
        for image, mask in zip(images, masks):
            features = baseline.backbone.features_one_by_one(image.unsqueeze(0).to(device))
            prediction = baseline.logits_from_features(features, image.shape[-2:]).argmax(dim=1).cpu()
            confusion += confusion_matrices(prediction, mask[None], baseline.num_classes)[0]
            floor.update(prediction[0], mask)
    return {
        "baseline_miou": mean_iou(confusion),
        "baseline_class_iou": dict(zip(baseline.class_names, class_iou(confusion).tolist())),
        "rows": floor.report(),
    }


def evaluate_input_compression(
    baseline: SegmentationModule, loader, codec: str, quality: int, device
) -> dict:
    """mIoU of ``baseline`` on images sent as ``codec`` at ``quality``, and their mean size."""
    mean, std = baseline.backbone.mean, baseline.backbone.std
    confusion = torch.zeros(baseline.num_classes, baseline.num_classes, dtype=torch.long)
    sizes = []
    for images, masks, _ in evaluation_batches(baseline, loader, device, f"{codec} quality {quality}"):
        restored = []
        for image in images:
            decoded, size = round_trip(image, mean, std, codec, quality)
            restored.append(decoded)
            sizes.append(size)
        prediction = baseline.predict_masks(torch.stack(restored).to(device)).cpu()
        confusion += confusion_matrices(prediction, masks, baseline.num_classes).sum(dim=0)
    return {
        "codec": codec,
        "quality": quality,
        "payload_bytes_mean": float(np.mean(sizes)),
        "miou": mean_iou(confusion),
        "class_iou": dict(zip(baseline.class_names, class_iou(confusion).tolist())),
    }
