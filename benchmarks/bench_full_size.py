"""What a dataset of a given size costs: the seed's three commands, timed, on synthetic pets.

    python benchmarks/bench_full_size.py --images 500 1000 2000 [--model vit] [--epochs 10]
    python benchmarks/bench_full_size.py --images 3680 --test_images 3669    # Oxford-IIIT Pet's size

For each size: ``make-data`` writes that many trainval images (and as many test images, unless
--test_images says otherwise) at Oxford-IIIT Pet's typical sizes (300-500 px sides), then
``train-baseline`` (the feature cache is built inside it), ``squeeze`` (VQ, reusing the cache) and
``visualize`` on the test split run as the user runs them, each in its own process with
``--weights none`` (the same cost as pretrained weights). Prints, per stage, the wall time, the
process's peak RSS and the time per image, then the cache's size on disk, as a Markdown table.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = [sys.executable, "-m", "embeddings_squeeze"]


def timed(argv: list[str]) -> tuple[float, float]:
    """Run one command; its wall time in seconds and its peak RSS in MiB."""
    # stderr to a file, not a pipe: nobody reads a pipe while the command runs, and once its progress
    # bars fill the pipe's 64 KiB the command blocks (a full-size visualize did)
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen([*PROGRAM, *argv], stdout=subprocess.DEVNULL, stderr=errors)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            sys.exit(f"{argv[0]} failed: {errors.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024  # Linux reports KiB


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(size: int, test_size: int, args, folder: Path) -> list[tuple]:
    data, outputs = folder / "data", folder / "outputs"
    common = ["--model", args.model, "--weights", "none", "--data_path", str(data)]
    training = [*common, "--epochs", str(args.epochs), "--batch_size", "8", "--output_dir", str(outputs)]
    training += ["--accelerator", args.accelerator]
    image_epochs = (size - round(size * 0.1)) * args.epochs  # training images (--val_fraction 0.1) x epochs
    runs = outputs / "q" / "version_0", outputs / "b_baseline" / "version_0"
    stages = [
        ("make-data", ["make-data", "--root", str(data), "--n-trainval", str(size), "--n-test",
                       str(test_size), "--min-size", "300", "--max-size", "500"], size + test_size, "image"),
        ("train-baseline (cache built inside)", ["train-baseline", *training, "--experiment_name", "b"],
         image_epochs, "image x epoch"),
        ("squeeze (VQ K=512, cache reused)", ["squeeze", *training, "--experiment_name", "q"],
         image_epochs, "image x epoch"),
        ("visualize (test split)", ["visualize", "--data_path", str(data), "--accelerator", args.accelerator,
                                    "--vq_checkpoint", str(runs[0] / "last.ckpt"),
                                    "--baseline_checkpoint", str(runs[1] / "last.ckpt"),
                                    "--output_dir", str(folder / "figures")], test_size, "image"),
    ]  # fmt: skip
    rows = []
    for name, argv, count, unit in stages:
        wall, rss = timed(argv)
        rows.append((size, name, wall, rss, f"{1000 * wall / count:.1f} ms per {unit}"))
    cache = folder_bytes(outputs / ".feature_cache") / 2**20
    rows.append((size, "feature cache on disk", None, None, f"{cache:.0f} MiB"))
    return rows


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, nargs="+", default=[500], help="trainval images, one run each")
    parser.add_argument("--test_images", type=int, help="test images (default: as many as --images)")
    parser.add_argument("--model", default="vit", help="backbone (default: vit)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs of each training (default: 10)")
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (default: cpu)")
    args = parser.parse_args()
    print(f"{args.model}, {args.epochs} epochs, batch 8, {os.cpu_count()} CPUs, {args.accelerator}")
    print("\n| trainval images | stage | wall | peak RSS | per image |\n|---|---|---|---|---|")
    for size in args.images:
        with tempfile.TemporaryDirectory() as folder:
            rows = measure(size, args.test_images or size, args, Path(folder))
            for images, name, wall, rss, per_image in rows:
                timing = "" if wall is None else f"{wall:.1f} s"
                memory = "" if rss is None else f"{rss:.0f} MiB"
                print(f"| {images} | {name} | {timing} | {memory} | {per_image} |", flush=True)


if __name__ == "__main__":
    main()
