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
from embeddings_squeeze.engine.run_dirs import prepare_output_dir
from embeddings_squeeze.engine.setup import load_coder
from embeddings_squeeze.errors import UserError

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_codec_arguments(parser, "payloads", ".esq files written by encode", "folder for the mask PNGs")
    return parser


def main(args: argparse.Namespace) -> list[Path]:
    module, coder = load_coder(args.checkpoint, from_namespace(RuntimeConfig, args), args.dataset)
    output_dir = prepare_output_dir(args.output_dir)
    written = []
    for payload_path in map(Path, args.payloads):
        try:
            payload = payload_path.read_bytes()
        except OSError as error:
            raise UserError(f"cannot read payload {payload_path} ({error.strerror})") from None
        indices, size = coder.decode(payload, name=str(payload_path))
        mask = Image.fromarray(module.decode_mask(indices, size).cpu().numpy().astype(np.uint8), mode="P")
        mask.putpalette(module.classes.palette())
        target = output_dir / f"{payload_path.stem}.png"
        mask.save(target)
        log.info("%s -> %s", payload_path, target)
        written.append(target)
    return written


if __name__ == "__main__":
    cli.run(main, get_args_parser())
