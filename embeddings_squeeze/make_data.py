"""Write a synthetic dataset in a real on-disk layout (the real loaders read it unchanged).

embeddings-squeeze make-data --root ./data --n-trainval 96 --n-test 32 --seed 0
embeddings-squeeze make-data --dataset voc --root ./voc       (VOCdevkit/VOC2012: train and val lists)
embeddings-squeeze make-data --dataset folder --root ./mine   (images/, masks/, classes.json, splits.json)

Pass the same folder as --data_path (with the same --dataset) to the other commands.
"""

import argparse
import logging

from embeddings_squeeze import cli
from embeddings_squeeze.config import positive_int

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = cli.parser_for(__doc__)
    parser.add_argument(
        "--dataset", default="pet", help="which dataset's layout to write: pet, voc, folder, or a registered "
        "one with a synthetic writer (default: pet)",
    )  # fmt: skip
    parser.add_argument(
        "--root", default="./data", help="the folder to pass as --data_path (default: ./data)"
    )
    parser.add_argument(
        "--n-trainval", type=positive_int, default=96, dest="n_trainval",
        help="images in pet's trainval list, VOC's train list or the folder's train list (default: 96)",
    )  # fmt: skip
    parser.add_argument(
        "--n-test", type=positive_int, default=32, dest="n_test",
        help="images in pet's test list, VOC's val list (its test split here) or the folder's test list "
        "(default: 32)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files (default: 0)")
    parser.add_argument("--min-size", type=positive_int, default=160, dest="min_size",
                        help="smallest image side in pixels (default: 160)")  # fmt: skip
    parser.add_argument("--max-size", type=positive_int, default=320, dest="max_size",
                        help="largest image side in pixels (default: 320)")  # fmt: skip
    return parser


def main(args: argparse.Namespace):
    # imported here, after parsing: --help answers without loading the data stack
    from embeddings_squeeze.data.registry import dataset_class

    dataset = dataset_class(args.dataset)
    base = dataset.write_synthetic(
        args.root, args.n_trainval, args.n_test, args.seed, args.min_size, args.max_size
    )
    first, second = dataset.synthetic_lists
    log.info("wrote %d %s and %d %s images to %s", args.n_trainval, first, args.n_test, second, base)
    return base


if __name__ == "__main__":
    cli.run(main, get_args_parser())
