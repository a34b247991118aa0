"""What bf16 features change: one baseline and one VQ checkpoint scored on one split with the frozen
backbone in float32 and in bfloat16, everything else identical, image by image.

    python benchmarks/bench_precision_effect.py --baseline_checkpoint B --vq_checkpoint V --data_path D

Per model: mIoU in each precision and the paired difference bf16 - float32 with its 95 % bootstrap
interval (the same resampled images for both); for the VQ model also the images whose code changes at
any grid cell, the share of grid cells that change code, and the mean payload bytes in each
precision. Prints a Markdown table. The checkpoints' own precision is ignored: both runs set it.
"""

import argparse
import math

import torch
from tqdm import tqdm

from embeddings_squeeze.config import DataConfig
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.engine.rate import payload_coder
from embeddings_squeeze.engine.setup import datamodule_for
from embeddings_squeeze.utils import intervals
from embeddings_squeeze.utils.iou import confusion_matrices, mean_iou, per_image_iou
from embeddings_squeeze.utils.metrics import IoU

PRECISIONS = ("float32", "bfloat16")


def confusion(prediction: torch.Tensor, target: torch.Tensor, module) -> torch.Tensor:
    return confusion_matrices(prediction[None], target[None], len(module.class_names))[0]


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--baseline_checkpoint", required=True)
    parser.add_argument("--vq_checkpoint", required=True)
    parser.add_argument("--data_path", required=True)
    parser.add_argument("--dataset_split", default="test", choices=("test", "val"))
    args = parser.parse_args()

    baseline = load_module(args.baseline_checkpoint, "baseline")
    vq = load_module(args.vq_checkpoint, "squeezed")
    trained = read_checkpoint(args.vq_checkpoint)["datamodule_hyper_parameters"]
    data = DataConfig(
        data_path=args.data_path, split_seed=trained["split_seed"], subset_size=trained["subset_size"]
    )
    datamodule = datamodule_for(data, vq.model_config, trained["seed"])
    datamodule.setup()
    files = datamodule.files[args.dataset_split]
    coder = payload_coder(vq)
    confusions = {(model, name): [] for model in ("baseline", "vq") for name in PRECISIONS}
    payload_bytes = {name: 0 for name in PRECISIONS}
    changed_images = changed_cells = cells = 0
    for position in tqdm(range(len(files)), desc="scoring in both precisions", unit="image"):
        image, target = files[position][0], files.load(position, files.transform.native_labels)
        size = tuple(target.shape)
        codes = {}
        for name in PRECISIONS:
            for module in (baseline, vq):
                module.backbone.feature_precision = name
            features = baseline.backbone.features_one_by_one(image[None])
            prediction = baseline.logits_from_features(features, size).argmax(dim=1)[0]
            confusions["baseline", name].append(confusion(prediction, target, vq))
            codes[name] = vq.encode_image(image)[1]
            prediction = vq.decode_mask(codes[name], size)
            confusions["vq", name].append(confusion(prediction, target, vq))
            payload_bytes[name] += len(coder.encode(codes[name], size))
        moved = (codes["float32"] != codes["bfloat16"]).any(dim=-1)
        changed_images += int(moved.any())
        changed_cells += int(moved.sum())
        cells += moved.numel()

    model = f"{vq.model_config.backbone}, {vq.hparams.quantizer_type}"
    print(f"{len(files)} {args.dataset_split} images; {model}\n")
    columns = ["model", "mIoU float32", "mIoU bfloat16", "bf16 - float32 [95 % interval]",
               "images whose IoU moves", "largest move of an image's IoU"]  # fmt: skip
    print(f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}")
    for model in ("baseline", "vq"):
        single = torch.stack(confusions[model, "float32"])
        half = torch.stack(confusions[model, "bfloat16"])
        found = intervals.interval([half], IoU(), [single])
        low, high = found.bounds() or (math.nan, math.nan)
        verdict = "" if intervals.significant(found.p_value) else " (no difference shown)"
        moves = (per_image_iou(half) - per_image_iou(single)).abs().nan_to_num()
        before, after = mean_iou(single.sum(dim=0)), mean_iou(half.sum(dim=0))
        change = f"{after - before:+.4f} [{low:+.4f}, {high:+.4f}]{verdict}"
        print(f"| {model} | {before:.4f} | {after:.4f} | {change} | {int((moves > 0).sum())} of {len(moves)} "
              f"| {moves.max():.4f} |")  # fmt: skip
    print(f"\nVQ codes: {changed_images} of {len(files)} images change code at one grid cell or more; "
          f"{changed_cells} of {cells} cells ({changed_cells / cells:.2%}) change")  # fmt: skip
    print("payload bytes per image, mean: " + ", ".join(f"{name} {payload_bytes[name] / len(files):.2f}"
                                                       for name in PRECISIONS))  # fmt: skip


if __name__ == "__main__":
    main()
