"""The command line: parsers built from the config classes, the error guard, ``embeddings-squeeze``.

Every flag comes from a field of ``config.py``, so it means the same thing, with the same
default, in every command; a command states only which groups it takes and its own few defaults.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
)
from embeddings_squeeze.errors import UserError

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
    "export": "embeddings_squeeze.export",
}


def parser_for(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_training_arguments(parser: argparse.ArgumentParser, **defaults) -> None:
    """The flags of train_baseline.py (squeeze.py adds the quantizer's)."""
    for config in (ModelConfig, DataConfig, OptimizerConfig, TrainingConfig, RuntimeConfig):
        add_arguments(parser, config, defaults=defaults)


def training_configs(args: argparse.Namespace) -> dict:
    """The config objects of parsed training flags, as ``engine.fitting.fit`` takes them."""
    return {
        "model": from_namespace(ModelConfig, args),
        "data": from_namespace(DataConfig, args),
        "optimizer": from_namespace(OptimizerConfig, args),
        "training": from_namespace(TrainingConfig, args),
        "runtime": from_namespace(RuntimeConfig, args),
    }


def add_codec_arguments(
    parser: argparse.ArgumentParser, inputs: str, inputs_help: str, output_help: str
) -> None:
    """Flags of encode and decode: the checkpoint, the files, the output folder and the device."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="a squeezed checkpoint, of any quantizer type (squeeze.py's last.ckpt)",
    )
    parser.add_argument(inputs, nargs="+", help=inputs_help)
    parser.add_argument("-o", "--output_dir", required=True, help=output_help)
    add_arguments(
        parser,
        ModelConfig,
        only=("dataset",),
        defaults={"dataset": None},
        title="check (refuse a checkpoint trained on another --dataset; default: any)",
    )
    add_arguments(parser, RuntimeConfig, only=("accelerator",))


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")


def run(main: Callable, parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> None:
    """Parse, run ``main``, and turn a user mistake into one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    configure_logging()
    import torch  # here, not at the top: the bare `embeddings-squeeze --help` never loads it

    try:
        main(args)
    except UserError as error:
        fail(str(error), error.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except torch.cuda.OutOfMemoryError:
        fail(CUDA_OOM_HINT)


def fail(message: str, exit_code: int = 2) -> NoReturn:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(exit_code)


def one_line(message: str) -> str:
    """``message`` without terminal escape codes, its lines joined: an error is one plain line."""
    return " ".join(ANSI_ESCAPE.sub("", message).split())


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
