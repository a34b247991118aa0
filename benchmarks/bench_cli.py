"""How fast each command answers --help and a misspelt flag, next to Python's and torch's start-up.

    python benchmarks/bench_cli.py [--repeats 5]

Each figure is the median wall time of fresh processes (``python -m embeddings_squeeze <command> ...``),
measured one after the other in this run; the two reference rows time an empty interpreter and one that
imports torch, so the ratios hold on other machines.
"""

import argparse
import statistics
import subprocess
import sys
import time

from embeddings_squeeze.cli import COMMANDS


def median_seconds(argv: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=5, help="processes per figure (default: 5)")
    args = parser.parse_args()
    program = [sys.executable, "-m", "embeddings_squeeze"]
    python = median_seconds([sys.executable, "-c", "pass"], args.repeats)
    torch = median_seconds([sys.executable, "-c", "import torch"], args.repeats)
    print(f"python alone {python:.2f} s; python + import torch {torch:.2f} s\n")
    print("| command | --help | misspelt flag | --help / import torch |\n|---|---|---|---|")
    for command in [None, *COMMANDS]:
        words = [] if command is None else [command]
        helped = median_seconds([*program, *words, "--help"], args.repeats)
        mistaken = median_seconds([*program, *words, "--no_such_flag"], args.repeats)
        print(
            f"| {command or '(none)'} | {helped:.2f} s | {mistaken:.2f} s | {helped / torch:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
