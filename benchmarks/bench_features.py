"""How fast the frozen backbones run, against this machine's own limit.

    python benchmarks/bench_features.py [--backbones vit deeplab timm:resnet50] [--batches 1 8 32]
    python benchmarks/bench_features.py --device cuda      # what benchmarks/gpu_check.sh runs

For each backbone (random weights: the same arithmetic as pretrained ones) at 224 px, in float32 and
under bf16 autocast (``--feature_precision bfloat16``) at each batch size: images per second of
``features``, the FLOPs of one image (counted by ``torch.utils.flop_counter``) and so the achieved
GFLOP/s, as a fraction of the peak that a large matrix product or a large 3x3 convolution (the
faster) reaches in that precision on the same threads. Also whether batching changes the features
(a batch against the same images one by one). Prints the CPU or GPU it ran on, its bf16 flags, and a
Markdown table.
"""

import argparse
import platform
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from embeddings_squeeze.models.backbones import build_backbone, precision

IMAGE_SIZE = 224


def timed(work, minimum_seconds: float, device: torch.device) -> float:
    """Seconds per call of ``work``, after one warm-up call, over at least ``minimum_seconds``."""

    def finished():
        if device.type == "cuda":  # CUDA calls return before their kernels have run
            torch.cuda.synchronize(device)

    work()
    finished()
    calls, started = 0, time.perf_counter()
    while True:
        work()
        calls += 1
        finished()
        elapsed = time.perf_counter() - started
        if elapsed >= minimum_seconds:
            return elapsed / calls


def peak(dtype: torch.dtype, device: torch.device) -> float:
    """GFLOP/s of the faster of a large matrix product and a large 3x3 convolution in ``dtype``: what
    this machine's cores reach (on a CPU, oneDNN's convolutions outrun the matrix product)."""
    return max(matmul_rate(dtype, device), convolution_rate(dtype, device))


def convolution_rate(dtype: torch.dtype, device: torch.device) -> float:
    images = torch.randn(8, 256, 56, 56, device=device).to(dtype)
    weight = torch.randn(256, 256, 3, 3, device=device).to(dtype)
    seconds = timed(lambda: torch.nn.functional.conv2d(images, weight, padding=1), 2.0, device)
    return 2 * 8 * 256 * 256 * 9 * 56 * 56 / seconds / 1e9


def matmul_rate(dtype: torch.dtype, device: torch.device) -> float:
    side = 8192 if device.type == "cuda" else 2048  # a GPU needs a larger product to be kept busy
    first = torch.randn(side, side, device=device).to(dtype)
    second = torch.randn(side, side, device=device).to(dtype)
    seconds = timed(lambda: first @ second, 2.0, device)
    return 2 * side**3 / seconds / 1e9


def flops_per_image(backbone, device: torch.device) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        backbone.encode(torch.rand(1, 3, IMAGE_SIZE, IMAGE_SIZE, device=device))
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbones", nargs="+", default=["vit", "deeplab", "timm:resnet50"])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="least time measured per cell (default: 3)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    args = parser.parse_args()
    device = torch.device(args.device)

    if device.type == "cuda":
        capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
        print(f"device: {torch.cuda.get_device_name(device)}, compute capability {capability}")
    else:
        bf16 = sorted(flag for flag in precision.cpu_flags() if "bf16" in flag or flag.startswith("amx"))
        cpu = precision.cpu_model() or platform.processor()
        print(f"CPU: {cpu}; {torch.get_num_threads()} threads; bf16 flags: {', '.join(bf16) or 'none'}")
    print(f"torch {torch.__version__}; auto picks {precision.resolve('auto', device)} here\n")
    peaks = {name: peak(dtype, device) for name, dtype in precision.PRECISIONS.items() if name != "float16"}
    print(
        "peak (the faster of a 2048 x 2048 matmul and a 3x3 convolution): "
        + ", ".join(f"{name} {value:.0f} GFLOP/s" for name, value in peaks.items())
    )
    columns = ["backbone", "GFLOP/image", "precision", "batch", "images/s", "GFLOP/s", "of peak",
               "batch changes features"]  # fmt: skip
    print(f"\n| {' | '.join(columns)} |\n|{'---|' * len(columns)}")
    for name in args.backbones:
        backbone = build_backbone(name, 3, weights="none", image_size=IMAGE_SIZE).to(device).eval()
        gflop = flops_per_image(backbone, device) / 1e9
        for precision_name in peaks:
            backbone.feature_precision = precision_name
            for batch in args.batches:
                images = torch.rand(batch, 3, IMAGE_SIZE, IMAGE_SIZE, device=device)
                seconds = timed(lambda: backbone.features(images), args.seconds, device)
                rate = batch / seconds
                changes = "-"
                if batch > 1:
                    together = backbone.features(images)
                    alone = backbone.features_one_by_one(images)
                    changes = (
                        "no"
                        if torch.equal(together, alone)
                        else f"yes (max {(together - alone).abs().max():.1e})"
                    )
                cells = [name, f"{gflop:.1f}", precision_name, batch, f"{rate:.2f}", f"{rate * gflop:.0f}",
                         f"{rate * gflop / peaks[precision_name]:.0%}", changes]  # fmt: skip
                print(f"| {' | '.join(map(str, cells))} |", flush=True)


if __name__ == "__main__":
    main()
