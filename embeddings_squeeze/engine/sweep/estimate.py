"""What a sweep will cost, said before anything runs (``--dry_run``): its jobs, the backbone's passes
and the feature cache's bytes per split, and compute time by stage from per-image costs measured on
this machine on a few of the sweep's own test images.

The times are an estimate, labelled as one: each stage's measured cost per image times the images it
handles (``stage_seconds``), for one job at a time (jobs running at once divide the wall time). Each
cost is the median of a few timed rounds after a warm-up round, of the work itself: reading and
resizing an image, the backbone and each model's own training step (its quantizer and metric updates
included) on a batch of the sweep's batch size, a squeezed job's comparison image by image, each
codec's round trip. Lightning's loop, validation's forward passes, start-up and figures are not
counted, so it errs low (the dry run says by how much on a measured study).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from dataclasses import dataclass, replace

import torch

from embeddings_squeeze.data.splits import EvaluationSplit
from embeddings_squeeze.engine.baseline_cache import KeptBaseline
from embeddings_squeeze.engine.evaluation import CompareOptions, ComparisonPass
from embeddings_squeeze.engine.fitting import wants_cache
from embeddings_squeeze.engine.sweep.spec import SPLIT, Job, JobKind, SweepSpec
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import BASELINE, BaselineSegmentationModule, SqueezedSegmentationModule
from embeddings_squeeze.models.backbones.base import FEATURE_DTYPE
from embeddings_squeeze.models.quantizers import quantizer_config, run_label
from embeddings_squeeze.utils.input_compression import codecs, round_trip

PROBE_IMAGES = 4  # test images timed; batches repeat them up to the sweep's batch size
ROUNDS = 5  # timed rounds after one untimed warm-up round (first calls build kernels); their median counts
QUALITY = 50  # the codecs' round trips are timed at one quality (time varies little with it)


@dataclass(frozen=True)
class Costs:
    """Seconds per image on this machine, and the bytes one image takes in the feature cache."""

    loading: float  # reading an image and its mask from disk, resized to the model's input
    backbone: float  # the frozen backbone on one image, in batches as the cache computes them
    training: dict[str, float]  # per model (``BASELINE`` or a quantizer's run label): one training image
    comparison: float  # a live comparison of one test image (mask read, both models scored, rate): a
    # baseline job's scoring and an anchor's are priced by it
    squeezed_comparison: float  # a squeezed job's: its model alone, the baseline's scores read
    codec: dict[str, float]  # per codec: a round trip of one test image (encode, decode, resize)
    cache_bytes: int  # float16 features and uint8 labels at the input size
    probes: int = PROBE_IMAGES  # the test images timed


def training_key(job: Job) -> str:
    """The key of ``job``'s model in ``Costs.training``."""
    return BASELINE if job.kind == JobKind.BASELINE else run_label(quantizer_config(job.options["quantizer"]))


def measure(sweep, pending: list[Job]) -> Costs:
    """Time each stage's work on the first test images, with models of the sweep's settings on random
    weights (the same cost as any weights, and nothing to download), one model in memory at a time
    beside the baseline. Every squeezed job's comparison is priced by the sweep's first quantizer's."""
    data, plan, device = sweep.datamodule, sweep.plan, sweep.device
    model = replace(plan.model, weights="none")
    baseline = BaselineSegmentationModule(model, plan.optimizer, classes=data.classes).to(device)
    files = data.files[SPLIT]
    split = EvaluationSplit(files)
    positions = range(min(PROBE_IMAGES, len(split)))
    if not positions:
        raise UserError("the test split has no images, so no cost can be measured; check --data_path")
    probes = [split[position] for position in positions]
    batch = [probes[i % len(probes)] for i in range(data.hparams.batch_size)]
    pixels = torch.stack([probe[0] for probe in batch]).to(device)
    labels = torch.stack([probe[1] for probe in batch]).to(device)
    features = baseline.backbone.features_one_by_one(pixels)
    training = {BASELINE: _median_seconds(_training_step(baseline, features, labels), device) / len(batch)}
    for job in pending:
        if job.kind == JobKind.SQUEEZED and training_key(job) not in training:
            squeezed = _squeezed(sweep, model, quantizer_config(job.options["quantizer"]))
            step = _training_step(squeezed, features, labels)
            training[training_key(job)] = _median_seconds(step, device) / len(batch)
            del squeezed, step  # one ViT in memory beside the baseline's, however many models
    compared = _squeezed(sweep, model, sweep.spec.quantizers[0]).eval()
    live, kept = _comparison(baseline.eval(), compared, files, probes, sweep.metrics, device)

    def round_trips(codec: str):
        return lambda: [round_trip(files.native_image(position), data.image_transform, codec, QUALITY)
                        for position in positions]  # fmt: skip

    size = model.image_size
    return Costs(
        loading=_median_seconds(lambda: [split[position] for position in positions], device) / len(positions),
        backbone=_median_seconds(lambda: baseline.backbone.features_one_by_one(pixels), device) / len(batch),
        training=training,
        comparison=_median_seconds(live, device) / len(probes),
        squeezed_comparison=_median_seconds(kept, device) / len(probes),
        codec={codec: _median_seconds(round_trips(codec), device) / len(positions) for codec in codecs()},
        cache_bytes=math.prod(features.shape[1:]) * FEATURE_DTYPE.itemsize + size * size,
        probes=len(positions),
    )


def _squeezed(sweep, model, quantizer):
    data = sweep.datamodule
    module = SqueezedSegmentationModule(model, quantizer, sweep.plan.optimizer, classes=data.classes)
    return module.to(sweep.device)


def _training_step(module, features: torch.Tensor, labels: torch.Tensor):
    """One step of ``module``'s own training on cached features: its loss (quantizer and metric updates
    included), backward and an Adam step on its trainable parameters."""
    optimizer = torch.optim.Adam([parameter for parameter in module.parameters() if parameter.requires_grad])

    def step() -> None:
        with warnings.catch_warnings():  # self.log outside a Trainer warns that it logs nothing: so be it
            warnings.filterwarnings("ignore", message=r".*self\.log")
            module.training_step((features, labels), 0).backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def _comparison(baseline, squeezed, files, probes: list, metrics, device):
    """Two comparisons of the probe images, as their per-image work: a live one (the mask read, both
    models' predictions and scores, the rate) and a squeezed job's, which reads the baseline's scores
    as its job saved them (they, the passes and the coder's model, made once per job, are set up
    here, outside the timing)."""
    with torch.no_grad():
        features = baseline.backbone.features_one_by_one(
            torch.stack([probe[0] for probe in probes]).to(device)
        )
        # the coder's model, from the probes
        squeezed.bottleneck.prepare_coder([squeezed.indices_of(features)])
    options = CompareOptions(metrics=tuple(metrics))

    @torch.no_grad()
    def over_probes(scoring: ComparisonPass) -> ComparisonPass:
        for position, (_, mask, _, _) in enumerate(probes):
            scoring.image(features[position, None], mask, files.native_labels(position), position)
        return scoring

    live = ComparisonPass(baseline, squeezed, files, device, options)
    measured = over_probes(live).comparison
    saved = {key: torch.stack(values) for key, values in measured.scores["baseline"].statistics.items()}
    kept = KeptBaseline({}, saved, measured.stacked("baseline", input_size=True))
    reading = ComparisonPass(baseline, squeezed, files, device, replace(options, kept=kept))
    return (lambda: over_probes(live)), (lambda: over_probes(reading))


def _median_seconds(work, device: torch.device) -> float:
    """The median wall time of ``ROUNDS`` calls of ``work()`` after one untimed call, waiting for a
    GPU's queued kernels on both sides of each."""
    work()
    timings = []
    for _ in range(ROUNDS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        work()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def stage_seconds(
    spec: SweepSpec, images: dict[str, int], pending: list[Job], costs: Costs, cached: bool
) -> dict[str, float]:
    """Compute seconds by stage for ``pending`` on splits of ``images`` (per split name). ``cached``:
    the sweep trains and scores from the feature cache (one backbone pass per split, by the features
    job); else every job reads and encodes each image it uses, every epoch.

    Validation is charged as training, a squeezed run's coder and rate passes (train and val) as one
    more epoch; a baseline's scoring (task floor and oracles beside it) as one live comparison, a
    squeezed job's as one that reads the baseline's scores, and a codec quality's as half a live
    comparison per seed's baseline."""
    kinds = [job.kind for job in pending]
    trained = [job for job in pending if job.kind in (JobKind.BASELINE, JobKind.SQUEEZED)]
    squeezed = kinds.count(JobKind.SQUEEZED)
    encoding = costs.loading + costs.backbone
    live = 0.0 if cached else encoding  # each image's features, where no cache serves them
    epochs = {JobKind.BASELINE: spec.baseline_epochs, JobKind.SQUEEZED: spec.plan.training.epochs + 1}
    fitted = images["train"] + images["val"]
    comparisons = kinds.count(JobKind.BASELINE) * costs.comparison + squeezed * costs.squeezed_comparison
    return {
        "features": sum(images.values()) * encoding if cached and JobKind.FEATURES in kinds else 0.0,
        "training": sum(
            epochs[job.kind] * fitted * (costs.training[training_key(job)] + live) for job in trained
        ),
        "scoring": (comparisons + len(trained) * live) * images[SPLIT],
        "anchors": images[SPLIT]
        * sum(
            costs.loading
            + costs.codec[job.options["codec"]]
            + costs.backbone
            + len(spec.seeds) * costs.comparison / 2
            for job in pending
            if job.kind == JobKind.INPUT
        ),
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
    costs, cached = measure(sweep, pending), wants_cache(sweep.plan.training)
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
        f"{costs.probes} test images), one job at a time: {stages}; about {total} in all, an estimate "
        f"that errs low (baselines at their cap of {sweep.spec.baseline_epochs} epochs; Lightning's loop, "
        "start-up and figures not counted: a Pet-sized study took 1.4x it, see benchmarks/RESULTS.md)"
    )
    return lines


def duration_text(seconds: float) -> str:
    """Seconds as a person reads them: '42 s', '17 min', '1.4 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
