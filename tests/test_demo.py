"""The demo a newcomer runs first, and the sample of its output the README shows."""

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
NUMBER = re.compile(r"[-+]?\d+(\.\d+)?")
CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # progress bars move the cursor between lines
PRECISION = re.compile(r"backbone in (bfloat16|float16|float32)")


def readme_sample() -> list[str]:
    """The lines of the console sample under the README's 'What the demo prints'."""
    section = README.read_text().split("## What the demo prints", 1)[1]
    block = section.split("```text\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def shape(line: str) -> str:
    """A console line with its numbers masked, up to what depends on them (an epoch flagged low, a
    difference's verdict), and with the precision ``auto`` chose on this CPU (the README's machine has
    bf16 units; others run float32)."""
    line = CURSOR_MOVES.sub("", line).split(" (low:")[0].split("  (Holm p")[0]
    line = PRECISION.sub("backbone in <precision>", line)
    return NUMBER.sub("#", line).strip()


def test_the_demo_prints_what_the_readme_shows(tmp_path):
    # the demo's command as the README gives it, smaller (its defaults take ~30 s): the lines keep their form
    argv = [sys.executable, "-m", "embeddings_squeeze", "demo", "--output_dir", "demo", "--n_trainval", 24,
            "--n_test", 8, "--image_size", 96, "--epochs", 3, "--baseline_epochs", 6]  # fmt: skip
    completed = subprocess.run(
        [str(arg) for arg in argv],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip: one stream, unbuffered, in the order a terminal shows it
    assert completed.returncode == 0, completed.stdout[-3000:]
    # progress bars redraw with carriage returns; every other line is what the user reads
    console = [shape(line) for line in re.split(r"[\r\n]", completed.stdout)]
    position = 0
    for line in readme_sample():  # in order, each begins a line the demo printed (its verdicts may differ)
        if line == "...":
            continue
        wanted = shape(line)
        found = [at for at in range(position, len(console)) if console[at].startswith(wanted)]
        assert found, f"the demo did not print a line like {line!r}"
        position = found[0] + 1
    assert completed.stdout.rstrip().splitlines()[-1].startswith("next: open demo/visualizations/")
    for name in ("best_results_test.png", "worst_results_test.png", "scores_test.csv", "summary_test.json"):
        assert (tmp_path / "demo" / "visualizations" / name).is_file()
