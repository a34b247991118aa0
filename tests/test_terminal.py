"""What a user's terminal shows, rendered by a terminal emulator (pyte) from a real run on a
pseudo-terminal: the interrupt's line last, log lines kept above the progress bars, one frame of each
bar."""

import fcntl
import os
import pty
import select
import signal
import struct
import subprocess
import termios
import time

import pyte
from helpers import ctrl_c_as_in_a_shell, tiny_command


def on_a_terminal(argv, columns: int, rows: int, interrupt_when=lambda: False) -> tuple[pyte.Screen, int]:
    """Run ``argv`` on a pseudo-terminal of ``columns`` x ``rows``, rendered by a terminal emulator as a
    user's screen shows it; Ctrl-C once ``interrupt_when()`` holds. The screen and the exit code."""
    screen = pyte.Screen(columns, rows)
    stream = pyte.ByteStream(screen)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    run = subprocess.Popen(
        argv,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        close_fds=True,
        preexec_fn=ctrl_c_as_in_a_shell,
    )
    os.close(terminal)
    signalled, deadline = False, time.monotonic() + 300
    while True:  # read until the process closes the terminal
        assert time.monotonic() < deadline, "timed out"
        if select.select([controller], [], [], 0.1)[0]:
            try:
                output = os.read(controller, 65536)
            except OSError:  # EIO: the process has exited and the terminal is closed
                break
            if not output:
                break
            stream.feed(output)
        if not signalled and interrupt_when():
            run.send_signal(signal.SIGINT)
            signalled = True
    os.close(controller)
    return screen, run.wait(timeout=60)


def test_the_interrupt_line_is_the_last_line_on_the_terminal(pet_root, tmp_path):
    """Ctrl-C once an epoch is saved: the progress bar's last frame, then the one line that says how to
    continue, and nothing after it; the codebook's epoch line, logged while the bar was live, stays on
    the screen as a line of its own (it was drawn over by the bar's next frame)."""
    columns, last = 120, tmp_path / "r" / "version_0" / "last.ckpt"
    argv = tiny_command(
        "squeeze", pet_root, tmp_path, "--epochs", 300, "--num_vectors", 8, "--experiment_name", "r"
    )
    screen, code = on_a_terminal(argv, columns, 40, interrupt_when=last.exists)
    assert code == 130
    shown = [line.rstrip() for line in screen.display]
    cursor = screen.cursor.y
    assert not any(shown[cursor:]), "something was drawn after the error line"
    error = next(row for row in range(cursor - 1, -1, -1) if shown[row].startswith("error: "))
    message = "".join(line.ljust(columns) for line in shown[error:cursor]).rstrip()
    assert message.startswith("error: training interrupted during epoch ")
    assert message.endswith(f"--resume {last}")  # the whole line, wrapped, and nothing glued to it
    assert "Epoch" in "".join(shown[:error])  # the progress bar was on the screen, above it
    assert any(
        line.startswith("epoch 0: ") and " of 8 codes used, perplexity " in line for line in shown[:error]
    )


def test_a_finished_run_on_the_terminal_keeps_every_epoch_line_and_one_frame_of_each_bar(pet_root, tmp_path):
    """A whole squeezed run: each epoch's codebook line on a line of its own, the training bar's last
    frame once, then each pass of the coder once at 100 % (drawn while the training bar was live, they
    became a line per redraw, and the training bar's frame was drawn again after them)."""
    argv = tiny_command(
        "squeeze", pet_root, tmp_path, "--epochs", 3, "--num_vectors", 8, "--experiment_name", "r"
    )
    screen, code = on_a_terminal(argv, 120, 60)
    assert code == 0
    shown = [line.rstrip() for line in screen.display]
    epochs = [line for line in shown if " of 8 codes used, perplexity " in line]
    assert [line.split(":")[0] for line in epochs] == ["epoch 0", "epoch 1", "epoch 2"]
    assert sum(line.startswith("Epoch 2/2 ") for line in shown) == 1
    coding = [line for line in shown if line.startswith("coding the training split:")]
    assert len(coding) == 2 and all("100%" in line for line in coding)  # last.ckpt's and the best's
    assert shown.index(epochs[-1]) < next(i for i, line in enumerate(shown) if line.startswith("Epoch 2/2 "))
    assert shown[[line.startswith("done: ") for line in shown].index(True) - 1].startswith(
        "coding the training split:"
    )
