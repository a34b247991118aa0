"""Write a synthetic Oxford-IIIT Pet tree (same layout, loads with the real loader).

embeddings-squeeze make-data --root ./data --n-trainval 96 --n-test 32 --seed 0
"""

import argparse
import logging

from embeddings_squeeze.config import positive_int
from embeddings_squeeze.data.synthetic import make_synthetic_dataset

log = logging.getLogger(__name__)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default="./data", help="folder to hold oxford-iiit-pet/ (default: ./data)")
    parser.add_argument("--n-trainval", "--n_trainval", type=positive_int, default=96, dest="n_trainval")
    parser.add_argument("--n-test", "--n_test", type=positive_int, default=32, dest="n_test")
    parser.add_argument("--seed", type=int, default=0, help="same seed, byte-identical files (default: 0)")
    parser.add_argument("--min-size", "--min_size", type=positive_int, default=160, dest="min_size")
    parser.add_argument("--max-size", "--max_size", type=positive_int, default=320, dest="max_size")
    return parser


def main(args: argparse.Namespace):
    base = make_synthetic_dataset(
        args.root, args.n_trainval, args.n_test, args.seed, args.min_size, args.max_size
    )
    log.info("wrote %d trainval and %d test images to %s", args.n_trainval, args.n_test, base)
    return base


if __name__ == "__main__":
    from embeddings_squeeze.cli import run

    run(main, get_args_parser())
