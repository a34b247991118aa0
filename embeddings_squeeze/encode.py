"""Encode images into compact payloads with a trained squeezed checkpoint (the sender's side).

    embeddings-squeeze encode --checkpoint outputs/my_vq/version_0/last.ckpt cat.jpg dog.jpg -o payloads/

Each image becomes <output_dir>/<name>.esq: a 10-byte header (with the image's size) and what the
quantizer sends, coded (codebook indices range-coded under the training histogram; for an
entropy-bottleneck checkpoint, CompressAI's rANS bitstream of its rounded latent).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from embeddings_squeeze import cli
from embeddings_squeeze.config import RuntimeConfig, from_namespace
from embeddings_squeeze.errors import UserError

if TYPE_CHECKING:
    import torch

    from embeddings_squeeze.data.transforms import ImageTransform

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    cli.add_codec_arguments(
        parser, "images", "image files (any format Pillow reads)", "folder for the .esq payloads"
    )
    return parser


def read_image(path: Path, transform: ImageTransform) -> tuple[torch.Tensor, tuple[int, int]]:
    """The model's input for an image file, and the image's own (height, width)."""
    try:
        with Image.open(path) as image:
            return transform(image), (image.height, image.width)
    except FileNotFoundError:
        raise UserError(f"image {path} not found; check the path") from None
    except (OSError, UnidentifiedImageError):
        raise UserError(f"cannot read image {path}: truncated or not an image") from None


def main(args: argparse.Namespace) -> list[Path]:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.data.transforms import ImageTransform
    from embeddings_squeeze.engine.run_dirs import one_output_each, output_folder
    from embeddings_squeeze.engine.setup import load_coder

    images = [Path(path) for path in args.images]
    targets = one_output_each(images, args.output_dir, ".esq", args.overwrite)
    module, coder = load_coder(args.checkpoint, from_namespace(RuntimeConfig, args), args.dataset)
    transform = ImageTransform(module.hparams.image_size, module.backbone.mean, module.backbone.std)
    with output_folder(args.output_dir):
        for image_path, target in zip(images, targets):
            pixels, size = read_image(image_path, transform)
            _, indices = module.encode_image(pixels)
            payload = coder.encode(indices, size)
            target.write_bytes(payload)
            log.info("%s -> %s (%d bytes)", image_path, target, len(payload))
    return targets


if __name__ == "__main__":
    cli.run(main, get_args_parser())
