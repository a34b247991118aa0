"""Training time with and without the feature cache, measured side by side in one run.

    python benchmarks/bench_cache.py --model vit --images 200 --epochs 10 [--accelerator gpu]

Writes synthetic data to a temporary folder, trains the VQ model twice with identical settings
(--cache_features off, then on, the cache built from scratch inside the timed run) and prints
per-epoch and whole-run times and their ratios.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from embeddings_squeeze.config import DataConfig, ModelConfig, QuantizerConfig, RuntimeConfig, TrainingConfig
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine.fitting import fit


class EpochTimer(Callback):
    def __init__(self):
        self.durations = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.durations.append(time.perf_counter() - self.started)


def timed_run(data: Path, output: Path, args, cache: str) -> tuple[float, list[float]]:
    timer = EpochTimer()
    model = ModelConfig(backbone=args.model, weights="none")
    training = TrainingConfig(epochs=args.epochs, output_dir=str(output), cache_features=cache)
    data_config = DataConfig(data_path=str(data), batch_size=8)
    runtime = RuntimeConfig(accelerator=args.accelerator)
    started = time.perf_counter()
    fit(
        f"cache_{cache}", model, data_config, training, runtime,
        quantizer=QuantizerConfig(num_vectors=64), extra_callbacks=(timer,),
    )  # fmt: skip
    return time.perf_counter() - started, timer.durations


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit", choices=("vit", "deeplab"))
    parser.add_argument("--images", type=int, default=200, help="synthetic trainval images")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (default: cpu)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        make_synthetic_dataset(data, args.images, 8, seed=0)
        uncached_total, uncached = timed_run(data, Path(folder) / "runs", args, "off")
        cached_total, cached = timed_run(data, Path(folder) / "runs", args, "on")
    first_cached = cached[0]
    epoch_off, epoch_on = statistics.median(uncached), statistics.median(cached[1:] or cached)
    print(f"model {args.model}, {args.images} trainval images at 224 px, {args.epochs} epochs")
    print(f"accelerator: {args.accelerator}")
    print(f"epoch computing features: {epoch_off:.2f} s (median)")
    print(f"epoch on cached features: {epoch_on:.2f} s (median of epochs after the first)")
    print(f"-> cached epoch is {epoch_off / epoch_on:.1f}x faster")
    print(f"whole run without cache: {uncached_total:.1f} s; cached: {cached_total:.1f} s")
    ratio = cached_total / uncached_total
    print(f"-> cached run takes {ratio:.2f}x the time (first cached epoch {first_cached:.2f} s)")


if __name__ == "__main__":
    main()
