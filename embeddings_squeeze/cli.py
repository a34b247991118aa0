"""The command line: parsers built from the config classes, the error guard, ``embeddings-squeeze``.

Every flag comes from a field of ``config.py``, so it means the same thing, with the same
default, in every command; a command states only which groups it takes and its own few defaults.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from embeddings_squeeze import PROGRAM, __version__
from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    RuntimeConfig,
    TrainingConfig,
    add_arguments,
    from_namespace,
    help_of,
)
from embeddings_squeeze.console import configure_logging, one_line
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.utils.files import shown

CUDA_OOM_HINT = (
    "CUDA out of memory: reduce --batch_size, or run on the CPU with "
    'CUDA_VISIBLE_DEVICES="" embeddings-squeeze <command> ...'
)

# command name -> module that defines get_args_parser() and main(args); its docstring's first line is
# its line in the top-level --help
COMMANDS = {
    "train-baseline": "embeddings_squeeze.train_baseline",
    "squeeze": "embeddings_squeeze.squeeze",
    "visualize": "embeddings_squeeze.visualize",
    "make-data": "embeddings_squeeze.make_data",
    "demo": "embeddings_squeeze.demo",
    "encode": "embeddings_squeeze.encode",
    "decode": "embeddings_squeeze.decode",
    "sweep": "embeddings_squeeze.sweep",
    "export": "embeddings_squeeze.export",
}


class Parser(argparse.ArgumentParser):
    """argparse with the tool's manners: flags take dashes or underscores alike (``--num-vectors`` is
    ``--num_vectors``), and a mistake is one ``error:`` line with a hint, not the usage block."""

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else [str(arg) for arg in args]
        return super().parse_known_args([self._spelling(arg) for arg in args], namespace)

    def _spelling(self, token: str) -> str:
        """``token`` as this parser spells the flag, when it is a flag spelt the other way."""
        name, equals, value = token.partition("=")
        if not name.startswith("--") or name in self._option_string_actions:
            return token
        for other in ("--" + name[2:].replace("-", "_"), "--" + name[2:].replace("_", "-")):
            if other in self._option_string_actions:
                return other + equals + value
        return token

    def error(self, message: str) -> NoReturn:
        flags = [flag for flag in self._option_string_actions if flag.startswith("--")]
        words = message.replace(",", " ").replace("/", " ").split()
        unknown = [word for word in words if word.startswith("--") and word.rstrip(":") not in flags]
        close = [match for word in unknown for match in difflib.get_close_matches(word, flags, n=1)]
        hint = f" (did you mean {' '.join(close)})" if close else ""
        fail(f"{message}{hint}; '{self.prog} --help' lists every flag")


def parser_for(doc: str | None) -> Parser:
    """A command's parser. Flags are never abbreviated (``--num_vector`` is a mistake, not
    ``--num_vectors``): an abbreviation that works today breaks when a longer flag is added."""
    parser = Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {__version__}")
    return parser


def add_training_arguments(parser: argparse.ArgumentParser, **defaults) -> None:
    """The flags of train_baseline.py (squeeze.py adds the quantizer's). --data_path unset is ./data for
    a new run and, for --resume, the folder the run was trained on (where it still exists)."""
    folder = {"help": f"{help_of(DataConfig, 'data_path')} (default: {DataConfig.data_path}; with --resume, "
                      "the folder the run was trained on where it still exists)"}  # fmt: skip
    for config in (ModelConfig, DataConfig, OptimizerConfig, TrainingConfig, RuntimeConfig):
        add_arguments(parser, config, defaults={"data_path": None, **defaults}, options={"data_path": folder})


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
        help="a squeezed checkpoint, of any quantizer type (squeeze's last.ckpt)",
    )
    parser.add_argument(inputs, nargs="+", help=inputs_help)
    parser.add_argument("-o", "--output_dir", required=True, help=output_help)
    parser.add_argument("--overwrite", action="store_true", help="replace files of the same names there")
    add_arguments(
        parser,
        ModelConfig,
        only=("dataset",),
        defaults={"dataset": None},
        title="check (refuse a checkpoint trained on another --dataset; default: any)",
    )
    add_arguments(parser, RuntimeConfig, only=("accelerator",))


def report_run(last: Path, next_step: str) -> None:
    """The last line of a training command: what the run achieved, where it is, what to do next."""
    from embeddings_squeeze.engine.run_dirs import run_result  # the training stack is loaded by now

    result = run_result(last)
    epochs = f"{result['epochs']} epoch{'s' if result['epochs'] != 1 else ''}"
    print(
        f"done: {epochs}, best val mIoU {result['best_miou']:.4f} "
        f"({shown(result['best_checkpoint'])}); checkpoint {shown(last)}; next: {next_step}"
    )


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
    if sys.stderr.isatty():  # a progress bar may have left the cursor inside its line
        sys.stderr.write("\n")
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(exit_code)


def summary_of(command: str) -> str:
    """The first line of a command module's docstring, read without importing the module."""
    spec = importlib.util.find_spec(COMMANDS[command])
    return (ast.get_docstring(ast.parse(spec.loader.get_source(spec.name))) or "").splitlines()[0]


def usage() -> str:
    lines = [f"usage: {PROGRAM} <command> [flags]   ({PROGRAM} {__version__})", "", "commands:"]
    lines += [f"  {command:15} {summary_of(command)}" for command in COMMANDS]
    lines += ["", "'embeddings-squeeze <command> --help' lists a command's flags; the README explains them."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    """``embeddings-squeeze <command> [flags]``: one entry point for every script."""
    argv = [str(arg) for arg in (sys.argv[1:] if argv is None else argv)]
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] == "--version":
        print(f"{PROGRAM} {__version__}")
        return
    command = argv[0].replace("_", "-")  # the seed's script names work too: train_baseline
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean {close[0]})" if close else ""
        fail(f"unknown command {argv[0]!r}{hint}; '{PROGRAM} --help' lists the commands")
    module = importlib.import_module(COMMANDS[command])
    parser = module.get_args_parser()
    parser.prog = f"{PROGRAM} {command}"
    run(module.main, parser, argv[1:])
