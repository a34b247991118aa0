"""Where a cached training epoch's time goes, against the floor of reading the cached bytes and
running the head, measured in one run.

    python benchmarks/bench_cached_epoch.py --model vit --images 96 --epochs 4 [--accelerator gpu]

Writes synthetic pets (at Pet's image sizes) to a temporary folder and trains the baseline with the
feature cache (built before the timed epochs) through ``fit``, as ``train`` does; then, on the same
cached batches, times each part of a training step on its own. The floor is a plain PyTorch loop
over the cache: read a batch, the head forward at the feature grid, upsampling to the mask, the
cross-entropy, backward and the optimizer step. Everything beyond it is what the epoch adds (the
metrics, Lightning's loop, logging); the parts table names the biggest. Times are per training image.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze.config import DataConfig, ModelConfig, RuntimeConfig, TrainingConfig
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.feature_cache import CachedSplit
from embeddings_squeeze.engine.fitting import fit


class EpochTimer(Callback):
    """Wall time of each training epoch without the validation Lightning runs inside it."""

    def __init__(self):
        self.train = []
        self.validating = 0.0

    def on_train_epoch_start(self, trainer, module):
        self.started, self.validating = time.perf_counter(), 0.0

    def on_train_epoch_end(self, trainer, module):
        self.train.append(time.perf_counter() - self.started - self.validating)

    def on_validation_epoch_start(self, trainer, module):
        self.validation_started = time.perf_counter()

    def on_validation_epoch_end(self, trainer, module):
        self.validating += time.perf_counter() - self.validation_started


def synchronized(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_image(seconds: float, images: int) -> float:
    return 1e3 * seconds / images


def part_times(module, batches: list, device: torch.device) -> dict[str, float]:
    """Seconds each part of a training step takes over ``batches``, each part timed on its own."""
    backbone = module.backbone
    optimizer = torch.optim.Adam(module.backbone.head.parameters(), lr=1e-3)
    jaccard = {
        check: MulticlassJaccardIndex(module.num_classes, ignore_index=IGNORE_INDEX, validate_args=check)
        for check in (True, False)
    }
    times = dict.fromkeys(("head, upsample, loss, backward, step", "argmax over channels (dim=1)",
                           "labels as max(dim=1).indices", "Jaccard update, inputs checked",
                           "Jaccard update, unchecked"), 0.0)  # fmt: skip
    for features, masks, _ in batches:
        features, masks = features.to(device), masks.to(device)

        def timed(name, work):
            synchronized(device)
            started = time.perf_counter()
            result = work()
            synchronized(device)
            times[name] += time.perf_counter() - started
            return result

        def train_step():
            logits = backbone.classify(module.squeeze(features)[0], masks.shape[-2:])
            F.cross_entropy(logits, masks, ignore_index=IGNORE_INDEX).backward()
            optimizer.step()
            optimizer.zero_grad()
            return logits.detach()

        logits = timed("head, upsample, loss, backward, step", train_step)
        timed("argmax over channels (dim=1)", lambda: logits.argmax(dim=1))
        labels = timed("labels as max(dim=1).indices", lambda: logits.max(dim=1).indices)
        timed("Jaccard update, inputs checked", lambda: jaccard[True].to(device).update(labels, masks))
        timed("Jaccard update, unchecked", lambda: jaccard[False].to(device).update(labels, masks))
    return times


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit")
    parser.add_argument("--images", type=int, default=96, help="synthetic trainval images")
    parser.add_argument("--epochs", type=int, default=4, help="timed epochs: the median is reported")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (default: cpu)")
    args = parser.parse_args()
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        make_synthetic_dataset(data, args.images, 8, seed=0, min_size=200, max_size=500)  # Pet's sizes
        timer = EpochTimer()
        model = ModelConfig(backbone=args.model, weights="none", feature_precision="float32")
        data_config = DataConfig(data_path=str(data), batch_size=args.batch_size)
        runs = Path(folder) / "runs"
        training = TrainingConfig(epochs=args.epochs, output_dir=str(runs), cache_features="on")
        runtime = RuntimeConfig(accelerator=args.accelerator)
        checkpoint = fit("baseline", model, data_config, training, runtime, extra_callbacks=(timer,))
        module = load_module(checkpoint, "baseline").to(device).train()
        entries = [meta.parent for meta in (runs / ".feature_cache").glob("*/meta.json")]
        train_entry = max(entries, key=lambda entry: len(CachedSplit(entry, []).labels))  # train > val
        cached = CachedSplit(train_entry, [])
        images = len(cached)

        loader = DataLoader(cached, batch_size=args.batch_size, shuffle=True)
        started = time.perf_counter()
        batches = list(loader)
        read = time.perf_counter() - started
        parts = part_times(module, batches, device)
    epoch = statistics.median(timer.train[1:] or timer.train)
    floor = read + parts["head, upsample, loss, backward, step"]
    print(f"{args.model}, {images} cached training images, batch {args.batch_size}, {args.accelerator}; "
          f"ms per training image")  # fmt: skip
    print("| part | ms per image |")
    print("|---|---:|")
    print(f"| reading the cached batches | {per_image(read, images):.2f} |")
    for name, seconds in parts.items():
        print(f"| {name} | {per_image(seconds, images):.2f} |")
    print(f"| **floor** (reading + head, upsample, loss, backward, step) | {per_image(floor, images):.2f} |")
    timed = f"median of epochs 2-{args.epochs}"
    print(f"| **training epoch through fit** ({timed}) | {per_image(epoch, images):.2f} |")
    print(f"| epoch / floor | {epoch / floor:.2f}x |")


if __name__ == "__main__":
    main()
