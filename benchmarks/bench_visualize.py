"""visualize.py's evaluation: one shared backbone pass vs two, peak memory vs split size, and the
whole command, cold and on a cached split, against one backbone pass over the split.

    python benchmarks/bench_visualize.py --model vit --images 200 [--parts shared memory cache]

1. Trains a tiny baseline and VQ model (same seed, so the same random frozen backbone), then
   times the comparison over the test split with the backbone run once per batch for both
   models, and with one backbone pass per model, in the same process.
2. Runs visualize.py in fresh processes on 100 and on 1,000 test images (64 px inputs, so it
   stays quick) and compares their peak resident memory.
3. Times the visualize command (in this process) on test images at Pet's sizes (200-500 px): cold
   (the runs' feature cache folder exists, the test split's entry does not: it is built on the way)
   and again on the cached split, each as a ratio to one backbone pass over the split (the features
   of every test image, one image at a time, as the cache and a sender compute them).
"""

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from embeddings_squeeze import cli, squeeze, train_baseline
from embeddings_squeeze.config import DataConfig
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.evaluation import CompareOptions, compare_models
from embeddings_squeeze.engine.setup import datamodule_for

PEAK_RSS = """
import resource, sys
from embeddings_squeeze import visualize
visualize.main(visualize.get_args_parser().parse_args(sys.argv[1:]))
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def train_pair(data: Path, output: Path, model: str, image_size: int) -> tuple[Path, Path]:
    common = [
        "--model", model, "--weights", "none", "--data_path", str(data), "--output_dir", str(output),
        "--epochs", "1", "--image_size", str(image_size), "--seed", "0", "--accelerator", "cpu",
    ]  # fmt: skip
    baseline = train_baseline.main(
        train_baseline.get_args_parser().parse_args([*common, "--experiment_name", "b"])
    )
    vq = squeeze.main(squeeze.get_args_parser().parse_args([*common, "--experiment_name", "v"]))
    return baseline, vq


def time_comparison(data: Path, baseline_path: Path, vq_path: Path, model: str, share: bool) -> float:
    baseline, vq = load_module(baseline_path, "baseline"), load_module(vq_path, "squeezed")
    datamodule = datamodule_for(
        DataConfig(data_path=str(data), batch_size=8, split_seed=0), vq.model_config, 0
    )
    datamodule.setup()
    started = time.perf_counter()
    options = CompareOptions(n_best=5, n_worst=5, share_backbone=share)
    compare_models(baseline, vq, datamodule, "test", torch.device("cpu"), options)
    return time.perf_counter() - started


def peak_rss_kb(data: Path, baseline: Path, vq: Path, images: int, output: Path) -> int:
    argv = ["--vq_checkpoint", str(vq), "--baseline_checkpoint", str(baseline), "--data_path", str(data),
            "--subset_size", str(images), "--output_dir", str(output), "--accelerator", "cpu"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *argv], capture_output=True, text=True, check=True
    )
    with open(output / "scores_test.csv") as scores:
        assert len(list(csv.DictReader(scores))) == images
    return int(result.stdout.split("PEAK_KB")[-1])


def time_visualize(root: Path, model: str, images: int) -> None:
    data = root / "pets"
    make_synthetic_dataset(data, 16, images, seed=2, min_size=200, max_size=500)
    baseline, vq = train_pair(data, root / "cached_runs", model, 224)
    (root / "cached_runs" / ".feature_cache").mkdir()  # as a run of 2+ epochs leaves it
    module = load_module(vq, "squeezed")
    datamodule = datamodule_for(DataConfig(data_path=str(data), split_seed=0), module.model_config, 0)
    datamodule.setup()
    started = time.perf_counter()
    with torch.no_grad():
        for position in range(len(datamodule.files["test"])):
            image = datamodule.files["test"][position][0]
            module.backbone.features_one_by_one(image[None])
    one_pass = time.perf_counter() - started
    walls = {}
    for attempt in ("cold", "cached"):
        argv = ["visualize", "--baseline_checkpoint", str(baseline), "--vq_checkpoint", str(vq),
                "--data_path", str(data), "--output_dir", str(root / f"vis_{attempt}"),
                "--accelerator", "cpu"]  # fmt: skip
        started = time.perf_counter()
        cli.main(argv)
        walls[attempt] = time.perf_counter() - started
    print(f"model {model}, {images} test images at Pet's sizes, CPU: one backbone pass {one_pass:.1f} s")
    for attempt, wall in walls.items():
        print(f"visualize, {attempt}: {wall:.1f} s = {wall / one_pass:.2f}x one backbone pass")


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit", choices=("vit", "deeplab"))
    parser.add_argument("--images", type=int, default=200, help="test images for the timing part")
    parser.add_argument("--parts", nargs="+", default=["shared", "memory", "cache"],
                        choices=("shared", "memory", "cache"))  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if "cache" in args.parts:
            time_visualize(root, args.model, args.images)
        if "shared" in args.parts:
            shared_pass(root, args.model, args.images)
        if "memory" in args.parts:
            memory(root)


def shared_pass(root: Path, model: str, images: int) -> None:
    make_synthetic_dataset(root / "timing", 16, images, seed=0)
    baseline, vq = train_pair(root / "timing", root / "runs", model, 224)
    shared = time_comparison(root / "timing", baseline, vq, model, share=True)
    separate = time_comparison(root / "timing", baseline, vq, model, share=False)
    print(f"model {model}, {images} test images at 224 px, CPU")
    print(f"comparison with one shared backbone pass: {shared:.1f} s; with two passes: {separate:.1f} s")
    print(f"-> shared pass takes {shared / separate:.2f}x the time")


def memory(root: Path) -> None:
    make_synthetic_dataset(root / "memory", 16, 1000, seed=1, min_size=48, max_size=96)
    small_baseline, small_vq = train_pair(root / "memory", root / "small_runs", "vit", 64)
    rss = {
        n: peak_rss_kb(root / "memory", small_baseline, small_vq, n, root / f"vis{n}") for n in (100, 1000)
    }
    small, large = rss[100] / 1024, rss[1000] / 1024
    print(f"visualize.py peak RSS: {small:.0f} MiB on 100 images, {large:.0f} MiB on 1000")
    print(f"-> 1,000 images need {rss[1000] / rss[100]:.3f}x the memory of 100")


if __name__ == "__main__":
    main()
