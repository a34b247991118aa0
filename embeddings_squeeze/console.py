"""What the console shows: plain message lines without library noise, and errors as one line.

Commands call ``configure_logging`` after parsing (not at import), and so do the sweep's jobs,
which run in processes of their own.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

from tqdm import tqdm

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

# library messages that say nothing about the user's run, silenced by the commands (not at import)
NOISE = (
    r"💡 Tip:",  # Lightning's advertisements for its cloud services
    r"The `srun` command is available",  # on any machine with SLURM; the README says how to use it
    r"Checkpoint directory .* exists and is not empty",  # config.json and split.json come first
    r"Found \d+ module\(s\) in eval mode",  # the frozen encoder is kept in eval mode on purpose
    r"when logging on epoch level in distributed setting",  # epoch values are synced before logging
    r"does not have many workers",  # --num_workers 0 is the default on purpose (see the README)
    r"isinstance\(treespec, LeafSpec\)",  # a deprecation inside Lightning
    r"`torch.jit.script` is deprecated",  # inside CompressAI
)


# the loggers Lightning's own messages start from
LIGHTNING_MESSAGES = (
    "lightning.fabric.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.seed",
)


class Quiet(logging.Filter):
    """Drops log records whose message matches ``NOISE``; ``lightning_own``: Lightning's records too,
    which its package prints through a handler of its own; ``warnings_only``: records below WARNING
    (Lightning's status lines: seed set, GPU available, fit stopped; our summary line names the device)."""

    def __init__(self, lightning_own: bool = False, warnings_only: bool = False):
        super().__init__()
        self.lightning_own = lightning_own
        self.warnings_only = warnings_only

    def filter(self, record: logging.LogRecord) -> bool:
        if self.lightning_own and record.name.startswith("lightning"):
            return False
        if self.warnings_only and record.levelno < logging.WARNING:
            return False
        return not any(re.search(pattern, record.getMessage()) for pattern in NOISE)


class LineHandler(logging.StreamHandler):
    """Each message as a line of its own, above any progress bar: on stderr, tqdm's bars cleared and
    redrawn around it (``tqdm.write``); on a terminal where rich's live bar (Lightning's) is drawn,
    through that bar's console (on the terminal's stdout), which prints it above the bar (written past
    it, the line would land on the bar's own line and the bar's next redraw would erase it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            console = _live_console() if self.stream.isatty() else None
            if console is None:
                tqdm.write(message, file=self.stream)
            else:
                console.print(message, markup=False, highlight=False, emoji=False, soft_wrap=True)
        except Exception:  # as StreamHandler does: a failing log line must not stop the run
            self.handleError(record)


def _live_console():
    """rich's console when it draws a live display on a terminal, else None."""
    if "rich" not in sys.modules:  # nothing has drawn a bar yet
        return None
    import rich

    console = rich.get_console()
    # which display is live is private: a stack since rich 14.1, one display before; Lightning's own
    # bar reads it the same way (tests/test_library_internals.py holds rich to it)
    live = getattr(console, "_live_stack", None) or getattr(console, "_live", None)
    return console if console.is_terminal and live else None


def configure_logging() -> None:
    """Messages as plain lines; library noise (``NOISE``) out of logs and warnings."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[LineHandler()])
    for handler in logging.getLogger().handlers:
        handler.addFilter(Quiet(lightning_own=True))
    for name in LIGHTNING_MESSAGES:
        logging.getLogger(name).addFilter(Quiet(warnings_only=True))
    for pattern in NOISE:
        warnings.filterwarnings("ignore", message=f".*{pattern}")


def one_line(message: str) -> str:
    """``message`` without terminal escape codes, its lines joined: an error is one plain line."""
    return " ".join(ANSI_ESCAPE.sub("", message).split())
