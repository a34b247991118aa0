"""Feature-extraction throughput of a frozen backbone in float32 and under bf16 autocast.

    python benchmarks/bench_precision.py --model vit --images 64 --device cuda

Runs the same random images through the same backbone twice on one device and prints images/s
for each precision and their ratio. Meant for a GPU; it also runs on a CPU.
"""

import argparse
import time

import torch

from embeddings_squeeze.models.backbones import build_backbone


def throughput(backbone, images: torch.Tensor, batch_size: int, bf16: bool) -> float:
    device = images.device
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
        backbone.features(images[:batch_size])  # warm-up: kernels, allocator
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for start in range(0, len(images), batch_size):
            backbone.features(images[start : start + batch_size])
        if device.type == "cuda":
            torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="vit", choices=("vit", "deeplab"))
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    backbone = build_backbone(args.model, num_classes=3, weights="none", image_size=224).to(device)
    images = torch.randn(args.images, 3, 224, 224, device=device)
    float32 = throughput(backbone, images, args.batch_size, bf16=False)
    bfloat16 = throughput(backbone, images, args.batch_size, bf16=True)
    print(f"{args.model} features on {device}, {args.images} images at 224 px, batch {args.batch_size}")
    print(f"float32: {float32:.1f} images/s; bf16 autocast: {bfloat16:.1f} images/s")
    print(f"-> bf16 runs at {bfloat16 / float32:.2f}x the float32 throughput")


if __name__ == "__main__":
    main()
