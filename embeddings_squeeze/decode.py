"""Decode payloads into segmentation masks (the receiver's side; it never sees the images).

    embeddings-squeeze decode --checkpoint outputs/my_vq/version_0/last.ckpt payloads/*.esq -o masks/

Each payload becomes <output_dir>/<name>.png: a palette PNG whose pixel values are class labels
(0 pet, 1 background, 2 border in trimap mode) at the model's input size.
"""

import argparse
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from embeddings_squeeze import cli
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.utils.checkpoint import load_module
from embeddings_squeeze.utils.payload import decode_indices, fingerprint
from embeddings_squeeze.utils.run_info import prepare_output_dir

log = logging.getLogger(__name__)
PALETTE = [230, 159, 0, 86, 180, 233, 240, 228, 66]  # one colour per class, as in the figures


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="the VQ checkpoint that encoded the payloads")
    parser.add_argument("payloads", nargs="+", help=".esq files written by encode")
    parser.add_argument("-o", "--output_dir", required=True, help="folder for the mask PNGs")
    return parser


@torch.no_grad()
def decode_mask(module, indices: torch.Tensor) -> torch.Tensor:
    """(h, w, L) indices -> (S, S) labels, exactly as the VQ model predicts them from the image."""
    features = module.bottleneck.decode(indices.unsqueeze(0))
    size = (module.hparams.image_size, module.hparams.image_size)
    return module.backbone.classify(features, size).argmax(dim=1)[0]


def main(args: argparse.Namespace) -> list[Path]:
    module = load_module(args.checkpoint, "vq", "--checkpoint")
    output_dir = prepare_output_dir(args.output_dir)
    key = fingerprint(module)
    written = []
    for payload_path in map(Path, args.payloads):
        try:
            payload = payload_path.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read payload {payload_path} ({error.strerror})") from None
        indices = decode_indices(payload, module.bottleneck.code_histogram, key, name=str(payload_path))
        mask = Image.fromarray(decode_mask(module, indices).numpy().astype(np.uint8), mode="P")
        mask.putpalette(PALETTE)
        target = output_dir / f"{payload_path.stem}.png"
        mask.save(target)
        log.info("%s -> %s", payload_path, target)
        written.append(target)
    return written


if __name__ == "__main__":
    cli.run(main, get_args_parser())
