"""Decode payloads into segmentation masks (the receiver's side; it never sees the images).

    embeddings-squeeze decode --checkpoint outputs/my_vq/version_0/last.ckpt payloads/*.esq -o masks/

Each payload becomes <output_dir>/<name>.png: a palette PNG whose pixel values are class labels
(for pets in trimap mode 0 pet, 1 background, 2 border; the checkpoint records its dataset's
classes) at the image's own size (the payload carries it), coloured as in the figures.
"""

import argparse
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from embeddings_squeeze import cli
from embeddings_squeeze.config import RuntimeConfig, from_namespace
from embeddings_squeeze.errors import UserError

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_codec_arguments(parser, "payloads", ".esq files written by encode", "folder for the mask PNGs")
    return parser


def main(args: argparse.Namespace) -> list[Path]:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.run_dirs import one_output_each, output_folder
    from embeddings_squeeze.engine.setup import load_coder

    payloads = [Path(path) for path in args.payloads]
    targets = one_output_each(payloads, args.output_dir, ".png", args.overwrite)
    module, coder = load_coder(args.checkpoint, from_namespace(RuntimeConfig, args), args.dataset)
    with output_folder(args.output_dir):
        for payload_path, target in zip(payloads, targets):
            try:
                payload = payload_path.read_bytes()
            except OSError as error:
                raise UserError(f"cannot read payload {payload_path} ({error.strerror})") from None
            indices, size = coder.decode(payload, name=str(payload_path))
            labels = module.decode_mask(indices, size).cpu().numpy().astype(np.uint8)
            mask = Image.fromarray(labels, mode="P")
            mask.putpalette(module.classes.palette())
            mask.save(target)
            log.info("%s -> %s", payload_path, target)
    return targets


if __name__ == "__main__":
    cli.run(main, get_args_parser())
