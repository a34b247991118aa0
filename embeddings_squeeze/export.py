"""Write a portable checkpoint: the frozen backbone weights inside, nothing else needed to load it.

    embeddings-squeeze export --checkpoint outputs/my_vq/version_0/last.ckpt -o my_vq_portable.ckpt

Training checkpoints describe their frozen weights (torchvision's name, the seed of a random
backbone, or a file's path) instead of carrying them; an exported one carries them, for sharing
with a machine that has no network, another torch version or not the weights file. It loads with
``weights_only=True`` like any other.
"""

import argparse
import logging
from pathlib import Path

from embeddings_squeeze import cli
from embeddings_squeeze.errors import UserError

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    parser.add_argument("--checkpoint", required=True, help="a checkpoint written by training")
    parser.add_argument("-o", "--output", required=True, help="the portable checkpoint to write")
    return parser


def main(args: argparse.Namespace) -> Path:
    # imported here, after parsing: --help and flag mistakes answer without loading the training stack
    from embeddings_squeeze.engine.callbacks import AtomicCheckpointIO
    from embeddings_squeeze.engine.checkpoint import build_module, read_checkpoint
    from embeddings_squeeze.models.segmentation_module import CHECKPOINT_KEY, FROZEN_PREFIX

    target = Path(args.output)
    if target.exists():
        raise UserError(f"{target} already exists; choose another -o or remove it first")
    checkpoint = read_checkpoint(args.checkpoint)
    module = build_module(checkpoint, args.checkpoint)  # refuses weights that no longer match
    encoder = {FROZEN_PREFIX + key: value for key, value in module.backbone.encoder.state_dict().items()}
    exported = {
        **checkpoint,
        "state_dict": {**checkpoint["state_dict"], **encoder},
        CHECKPOINT_KEY: {**checkpoint[CHECKPOINT_KEY], "frozen_weights_stored": True},
    }
    try:
        AtomicCheckpointIO().save_checkpoint(exported, target)
    except OSError as error:
        raise UserError(f"cannot write {target} ({error.strerror}); choose another -o") from None
    log.info("wrote %s (%.1f MB, frozen weights included)", target, target.stat().st_size / 1e6)
    return target


if __name__ == "__main__":
    cli.run(main, get_args_parser())
