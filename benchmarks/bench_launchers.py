"""One sweep of 8 model jobs run by each launcher, one after the other: the wall time of each and the
ratios to the serial run.

    python benchmarks/bench_launchers.py [--images 200] [--epochs 5] [--launchers serial local slurm]

The sweep: ViT-B/32 (random weights, as costly as pretrained) at 224 px on synthetic pets, one seed,
vq and fsq at K = 8, 16, 32, 64 (8 model jobs), plus the baseline, the continuous reference, JPEG and
WebP at quality 50. ``local`` and ``slurm`` run 2 jobs at a time with cores / 2 threads each; serial
runs one job at a time on every core. ``slurm`` needs a cluster (scripts/local_slurm.sh start) and
waits for the tables (--wait).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROGRAM = [sys.executable, "-m", "embeddings_squeeze"]


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="synthetic trainval images (default: 200)")
    parser.add_argument("--epochs", type=int, default=5, help="epochs of each model (default: 5)")
    parser.add_argument("--launchers", nargs="+", default=["serial", "local", "slurm"])
    args = parser.parse_args()
    threads = max(1, (os.cpu_count() or 1) // 2)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:  # on the filesystem the jobs share
        data = Path(folder) / "data"
        subprocess.run([*PROGRAM, "make-data", "--root", data, "--n-trainval", str(args.images),
                        "--n-test", str(args.images // 2)], check=True, capture_output=True)  # fmt: skip
        common = ["sweep", "--weights", "none", "--data_path", str(data), "--epochs", str(args.epochs),
                  "--quantizer_type", "vq", "fsq", "--num_vectors", "8", "16", "32", "64",
                  "--jpeg_qualities", "50", "--batch_size", "8"]  # fmt: skip
        extra = {"serial": [], "local": ["--max_parallel", "2"],
                 "slurm": ["--max_parallel", "2", "--cpus_per_job", str(threads), "--wait"]}  # fmt: skip
        walls = {}
        for launcher in args.launchers:
            started = time.perf_counter()
            argv = [*PROGRAM, *common, "--output_dir", str(Path(folder) / launcher), "--launcher", launcher]
            subprocess.run([*argv, *extra[launcher]], check=True, capture_output=True)
            walls[launcher] = time.perf_counter() - started
            print(f"{launcher}: {walls[launcher]:.0f} s", flush=True)
    print(f"\n{os.cpu_count()} CPUs, {args.images} trainval images, {args.epochs} epochs")
    print("| launcher | wall | ratio to serial |\n|---|---|---|")
    for launcher, wall in walls.items():
        print(f"| {launcher} | {wall:.0f} s | {wall / walls.get('serial', wall):.2f} |")


if __name__ == "__main__":
    main()
