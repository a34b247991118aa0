"""What a sweep will cost, said before anything runs (``--dry_run``): its jobs, the backbone's passes
and the feature cache's bytes per split, and compute time by stage from per-image costs measured on
this machine on a few of the sweep's own test images.

The times are an estimate, labelled as one: each stage's measured cost per image times the images it
handles (``stage_seconds``), for one job at a time (jobs running at once divide the wall time).
Lightning's loop, start-up, loading models and the codecs' own coding are left out, so it is a lower
bound: a whole study took 1.9x it on the machine of benchmarks/RESULTS.md (issue 27).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.data.splits import EvaluationSplit
from embeddings_squeeze.engine.evaluation import receiver_masks
from embeddings_squeeze.engine.fitting import wants_cache
from embeddings_squeeze.engine.sweep.spec import SPLIT, Job, JobKind, SweepSpec
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import BaselineSegmentationModule
from embeddings_squeeze.models.backbones.base import FEATURE_DTYPE
from embeddings_squeeze.utils.metrics import image_statistics

PROBE_IMAGES = 4  # test images timed; one more, first, warms up and is not counted


@dataclass(frozen=True)
class Costs:
    """Seconds per image on this machine, and the bytes one image takes in the feature cache."""

    backbone: float  # the frozen backbone on one image (the cache batches only where that agrees)
    training: float  # the head on one image's features: forward at the input size, loss, backward, Adam
    scoring: float  # one model's score of one test image at its mask's own size (head, labels, counts)
    cache_bytes: int  # float16 features and uint8 labels at the input size


@dataclass(frozen=True)
class Probe:
    """One test image as the probe uses it."""

    pixels: torch.Tensor  # (3, S, S), normalised
    labels: torch.Tensor  # (S, S): what the loss sees
    target: torch.Tensor  # (H, W): what scores are computed against


def measure(sweep) -> Costs:
    """Time each stage's work on the first test images, with a baseline of the sweep's settings on
    random weights (the same cost as any weights, and nothing to download)."""
    data, plan, device = sweep.datamodule, sweep.plan, sweep.device
    model = replace(plan.model, weights="none")
    module = BaselineSegmentationModule(model, plan.optimizer, classes=data.classes).to(device)
    split = EvaluationSplit(data.files[SPLIT])
    probes = [Probe(*split[position][:3]) for position in range(min(PROBE_IMAGES + 1, len(split)))]
    encoded = [_timed(lambda p=p: module.backbone.features_one_by_one(p.pixels[None].to(device)), device)
               for p in probes]  # fmt: skip
    features = [value for _, value in encoded]
    optimizer = torch.optim.Adam(module.backbone.head.parameters())

    def train_step(position: int) -> None:
        labels = probes[position].labels
        logits = module.backbone.classify(features[position], labels.shape)
        F.cross_entropy(logits, labels[None].to(device), ignore_index=IGNORE_INDEX).backward()
        optimizer.step()
        optimizer.zero_grad()

    def score(position: int) -> None:
        target = probes[position].target
        (prediction,) = receiver_masks(module, features[position], [tuple(target.shape)])
        image_statistics(sweep.metrics, prediction, target, module.num_classes)

    steps = [_timed(lambda p=p: train_step(p), device) for p in range(len(probes))]
    with torch.no_grad():
        scores = [_timed(lambda p=p: score(p), device) for p in range(len(probes))]
    size = model.image_size
    return Costs(
        backbone=_mean_after_warm_up(encoded),
        training=_mean_after_warm_up(steps),
        scoring=_mean_after_warm_up(scores),
        cache_bytes=math.prod(features[0].shape[1:]) * FEATURE_DTYPE.itemsize + size * size,
    )


def _timed(work, device: torch.device) -> tuple[float, object]:
    """(seconds, result) of ``work()``, waiting for a GPU's queued kernels on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    result = work()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, result


def _mean_after_warm_up(timings: list[tuple[float, object]]) -> float:
    kept = timings[1:] or timings
    return sum(seconds for seconds, _ in kept) / len(kept)


def stage_seconds(
    spec: SweepSpec, images: dict[str, int], pending: list[Job], costs: Costs, cached: bool
) -> dict[str, float]:
    """Compute seconds by stage for ``pending`` on splits of ``images`` (per split name). ``cached``:
    the sweep trains and scores from the feature cache (one backbone pass per split, by the features
    job); else every job encodes each image it reads, every epoch.

    Validation is charged as training, a squeezed run's coder and rate passes (train and val) as one
    more epoch, and its score as two models' (the baseline's beside it, and the payloads)."""
    kinds = [job.kind for job in pending]
    trained, squeezed = (
        kinds.count(JobKind.BASELINE) + kinds.count(JobKind.SQUEEZED),
        kinds.count(JobKind.SQUEEZED),
    )
    epochs = kinds.count(JobKind.BASELINE) * spec.baseline_epochs + squeezed * (spec.plan.training.epochs + 1)
    live = 0.0 if cached else costs.backbone  # each image's features, where no cache serves them
    features = sum(images.values()) * costs.backbone if cached and JobKind.FEATURES in kinds else 0.0
    scorings = kinds.count(JobKind.BASELINE) + 2 * squeezed
    return {
        "features": features,
        "training": epochs * (images["train"] + images["val"]) * (costs.training + live),
        "scoring": (scorings * costs.scoring + trained * live) * images[SPLIT],
        "anchors": kinds.count(JobKind.INPUT)
        * images[SPLIT]
        * (costs.backbone + len(spec.seeds) * costs.scoring),
    }


def dry_run_lines(sweep, pending: list[Job]) -> list[str]:
    """The dry run's report: each pending job in order, then the backbone's passes with the cache's
    bytes per split and the estimated compute time by stage (or why there is no estimate)."""
    lines = [f"dry run: {len(pending)} job(s) would run; nothing runs now"]
    lines += [f"  job {i} of {len(pending)}: {job.name} ({job.kind})" for i, job in enumerate(pending, 1)]
    try:
        images = {name: len(files) for name, files in sweep.datamodule.files.items()}
    except UserError as error:  # the data is not there yet: the plan stands, the costs cannot be measured
        return [*lines, f"no estimate of the cost: {error}"]
    costs, cached = measure(sweep), wants_cache(sweep.plan.training)
    if cached:
        splits = ", ".join(f"{name} {count} images, {costs.cache_bytes * count / 1e6:.1f} MB"
                           for name, count in images.items())  # fmt: skip
        lines.append(f"backbone: one pass per split where the feature cache lacks it ({splits})")
    else:
        lines.append("backbone: every job encodes the images it reads (no feature cache for 1-epoch runs)")
    seconds = stage_seconds(sweep.spec, images, pending, costs, cached)
    stages = ", ".join(f"{stage} {duration_text(value)}" for stage, value in seconds.items())
    total = duration_text(sum(seconds.values()))
    lines.append(
        f"estimated compute time on this machine ({sweep.device.type}; per-image costs measured on "
        f"{PROBE_IMAGES} test images), one job at a time: {stages}; about {total} "
        f"in all, a lower bound (baselines at their cap of {sweep.spec.baseline_epochs} epochs; Lightning's "
        "loop, start-up, loading models and the codecs' own coding not counted)"
    )
    return lines


def duration_text(seconds: float) -> str:
    """Seconds as a person reads them: '42 s', '17 min', '1.4 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
