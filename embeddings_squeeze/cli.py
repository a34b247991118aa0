"""Command-line flags shared by every script, the error guard, and the ``embeddings-squeeze`` command.

Each script builds its parser from these groups, so a flag means the same thing, with the same
default, everywhere.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from embeddings_squeeze.data.labels import MASK_MODES
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.settings import DEFAULT_SPLIT_SEED, parse_dead_code_threshold

MODEL_CHOICES = ("vit", "deeplab")
WEIGHTS_HELP = "'default' (torchvision's pretrained weights), 'none' (random init) or a state-dict file"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
CUDA_OOM_HINT = (
    "CUDA out of memory: reduce --batch_size, or run on the CPU with "
    'CUDA_VISIBLE_DEVICES="" python <script>.py ...'
)

# command name -> module that defines get_args_parser() and main(args)
COMMANDS = {
    "train-baseline": "embeddings_squeeze.train_baseline",
    "squeeze": "embeddings_squeeze.squeeze",
    "visualize": "embeddings_squeeze.visualize",
    "make-data": "embeddings_squeeze.data.make_data",
    "demo": "embeddings_squeeze.demo",
    "encode": "embeddings_squeeze.encode",
    "decode": "embeddings_squeeze.decode",
    "sweep": "embeddings_squeeze.sweep",
}


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or more, got {value}")
    return value


def dead_code_threshold(text: str) -> float | str:
    try:
        return parse_dead_code_threshold(text)
    except UserError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def devices_value(text: str) -> int | str:
    """Lightning accepts a count, 'auto', -1, or a list such as '0,1'."""
    return int(text) if text.lstrip("-").isdigit() else text


def add_data_args(parser: argparse.ArgumentParser, *, training: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data_path", default="./data", help="folder holding oxford-iiit-pet/ (default: ./data)"
    )
    group.add_argument(
        "--subset_size",
        type=positive_int,
        default=None,
        help="use at most this many images per split, a seeded random sample (quick tests)",
    )
    group.add_argument(
        "--num_workers", type=non_negative_int, default=0, help="DataLoader workers (default: 0)"
    )
    if training:
        group.add_argument(
            "--image_size", type=positive_int, default=224, help="square input side (default: 224)"
        )
        group.add_argument(
            "--mask_mode",
            choices=MASK_MODES,
            default="trimap",
            help="trimap: pet/background/border classes; binary: pet/background, border ignored",
        )
        group.add_argument(
            "--val_fraction",
            type=float,
            default=0.1,
            help="share of trainval held out for validation by a seeded split (default: 0.1)",
        )
    group.add_argument(
        "--split_seed", type=int, default=DEFAULT_SPLIT_SEED if training else None,
        help=f"seed of the train/val split and of --subset_size samples, separate from --seed so runs "
        f"with different seeds share one split (default: {DEFAULT_SPLIT_SEED}"
        f"{'' if training else ', or as stored in the checkpoints'})",
    )  # fmt: skip


def add_model_args(parser: argparse.ArgumentParser, *, training: bool = True) -> None:
    group = parser.add_argument_group("model")
    usage = "training" if training else "the checkpoints (they are checked against it)"
    help_text = f"backbone: vit (ViT-B/32) or deeplab (DeepLabV3-ResNet50) for {usage} (default: vit)"
    group.add_argument("--model", choices=MODEL_CHOICES, default="vit", help=help_text)
    if training:
        group.add_argument("--weights", default="default", help=f"frozen backbone weights: {WEIGHTS_HELP}")


def add_runtime_args(parser: argparse.ArgumentParser, *, batch_size: int = 4) -> None:
    group = parser.add_argument_group("runtime")
    group.add_argument(
        "--batch_size", type=positive_int, default=batch_size, help=f"batch size (default: {batch_size})"
    )
    group.add_argument(
        "--seed", type=int, default=42, help="seed for initialisation and shuffling (default: 42)"
    )
    group.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto (default: auto)")
    group.add_argument("--devices", type=devices_value, default=1, help="device count or ids (default: 1)")


def add_codec_args(parser: argparse.ArgumentParser, inputs: str, inputs_help: str, output_help: str) -> None:
    """Flags of encode and decode: the checkpoint, the files, the output folder and the device."""
    parser.add_argument("--checkpoint", required=True, help="the VQ checkpoint (squeeze.py's last.ckpt)")
    parser.add_argument(inputs, nargs="+", help=inputs_help)
    parser.add_argument("-o", "--output_dir", required=True, help=output_help)
    parser.add_argument(
        "--accelerator", default="auto", help="cpu, gpu or auto (default: auto, a GPU when there is one)"
    )


def add_training_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=10, help="training epochs (default: 10)")
    group.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    group.add_argument("--weight_decay", type=float, default=0.0, help="Adam weight decay (default: 0)")
    group.add_argument(
        "--experiment_name",
        default=None,
        help="run name; outputs go to <output_dir>/<experiment_name>[_baseline]/version_N",
    )
    group.add_argument("--output_dir", default="./outputs", help="root of all runs (default: ./outputs)")
    group.add_argument(
        "--resume", nargs="?", const="latest", default=None, metavar="PATH",
        help="continue a run up to --epochs: the newest run of this experiment, or the given last.ckpt",
    )  # fmt: skip
    group.add_argument(
        "--cache_features", choices=("auto", "on", "off"), default="auto",
        help="reuse frozen-backbone features across epochs and runs; auto: on for runs of 2+ epochs "
        "or when a cache entry exists (default: auto)",
    )  # fmt: skip
    group.add_argument(
        "--cache_dir", default=None, help="feature cache folder (default: <output_dir>/.feature_cache)"
    )
    group.add_argument("--precision", default="32-true", help="Lightning precision, e.g. 32-true, bf16-mixed")
    group.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)")
    group.add_argument("--num_nodes", type=positive_int, default=1, help="machines for multi-node training")


def add_vq_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("quantization")
    group.add_argument(
        "--quantizer_type", choices=("vq", "rvq", "fsq", "lfq"), default="vq",
        help="vq: EMA codebook; rvq: residual VQ; fsq: finite scalar; lfq: lookup-free (default: vq)",
    )  # fmt: skip
    group.add_argument(
        "--num_vectors", "--codebook_size", type=positive_int, default=512,
        help="codebook size K per level: each grid position costs log2(K) bits per level (default: 512)",
    )  # fmt: skip
    group.add_argument(
        "--bottleneck_dim", type=positive_int, default=64, help="quantized vector size (default: 64)"
    )
    group.add_argument("--num_quantizers", type=positive_int, default=1, help="RVQ levels (default: 1)")
    group.add_argument(
        "--fsq_levels", default=None, help="FSQ levels such as 8,5,5 (default: from --num_vectors)"
    )
    group.add_argument(
        "--commitment_weight", type=float, default=0.25, help="VQ commitment weight (default: 0.25)"
    )
    group.add_argument("--decay", type=float, default=0.99, help="EMA decay of the codebook (default: 0.99)")
    group.add_argument(
        "--vq_loss_weight", type=float, default=1.0, help="weight of the quantizer loss (default: 1.0)"
    )
    group.add_argument(
        "--dead_code_threshold", type=dead_code_threshold, default="auto",
        help="re-seed a VQ/RVQ code whose EMA usage per step drops below this; auto: 1/16 of a "
        "uniform code's usage (batch vectors / K); 0 turns it off (default: auto)",
    )  # fmt: skip
    group.add_argument(
        "--no_kmeans_init", dest="kmeans_init", action="store_false",
        help="start VQ/RVQ codebooks at random instead of k-means on pooled training vectors",
    )  # fmt: skip
    group.add_argument(
        "--entropy_loss_weight", type=float, default=0.01,
        help="weight of LFQ's entropy loss (default: 0.01; the library's 0.1 collapses the head)",
    )  # fmt: skip


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run(main: Callable, parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Parse, run ``main``, and turn a user mistake into one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    configure_logging()
    try:
        main(args)
    except UserError as error:
        fail(_last_line(str(error)), error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except RuntimeError as error:  # torch.cuda.OutOfMemoryError is a RuntimeError
        if type(error).__name__ != "OutOfMemoryError":
            raise
        fail(CUDA_OOM_HINT)


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(exit_code)


def one_line(message: str) -> str:
    """``message`` without terminal escape codes, its lines joined: an error is one plain line."""
    return " ".join(ANSI_ESCAPE.sub("", message).split())


def _last_line(message: str) -> str:
    # a UserError raised in a DataLoader worker comes back wrapped around the worker's traceback
    line = message.strip().splitlines()[-1]
    return line.split("UserError: ", 1)[-1]


def main(argv: Sequence[str] | None = None) -> None:
    """``embeddings-squeeze <command> [flags]``: one entry point for every script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        usage = f"usage: embeddings-squeeze {{{names}}} [flags]; add --help after a command for its flags"
        if argv and argv[0] in ("-h", "--help"):
            print(usage)
            return
        fail(f"{'unknown command ' + repr(argv[0]) if argv else 'no command given'}; {usage}")
    module = importlib.import_module(COMMANDS[argv[0]])
    parser = module.get_args_parser()
    parser.prog = f"embeddings-squeeze {argv[0]}"
    run(module.main, parser, argv[1:])
