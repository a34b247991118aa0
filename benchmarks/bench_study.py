"""A whole study through the CLI, timed by stage: the baseline, 20 squeezed models of 4 quantizer
types (vq, fsq and lfq at K = 8 ... 128, eb at five lambdas) with their continuous references, and the
JPEG and WebP anchors at two qualities each; one seed, 10 epochs, ``--launcher serial``.

    python benchmarks/bench_study.py [--scale 1.0] [--epochs 10] [--accelerator cpu|gpu]

The data are synthetic pets at Pet's image sizes (200-500 px) and, at ``--scale 1``, Pet's counts
(3,680 trainval and 3,669 test images); a smaller scale keeps the same study on fewer images. The
sweep runs in this process (``embeddings_squeeze.cli.main``), so each stage's wall time is summed
from the engine functions that do it, and a forward hook on ViT-B/32's patch embedding counts every
image the frozen backbone encodes (the grid-size probe, a zero image, is not an image):

- feature passes: building feature cache entries (absent on code that computed features live);
- training: ``fit`` of every model (with the coder's model and the rate table each run ends with);
- scoring: the baseline's and every squeezed model's test-split comparison, figures included;
- anchors: the JPEG/WebP round trips and their baselines' scores;
- report: the collect step (statistics, tables, plot, report.html).

A stage called inside another (a cache entry built while training) counts for itself only, so the
stages and the rest (start-up, loading data and models) add up to the wall time. The last column
extrapolates each stage to Pet's counts, linear in the images it handles (a labelled estimate, not a
measurement; per-run constants scale with it, so it errs high). No GPU figure comes from this CPU:
run it with ``--accelerator gpu`` on a GPU machine for those.
"""

import argparse
import collections
import tempfile
import time
from pathlib import Path

import torch

from embeddings_squeeze import cli
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine import feature_cache, launchers
from embeddings_squeeze.engine.sweep import runner

PET = {"trainval": 3680, "test": 3669}
STAGES = {  # stage -> (module, function) whose calls are that stage's work
    "feature passes": (feature_cache, "_write_entry"),
    "training": (runner, "fit"),
    "scoring": (runner, "compare_models"),
    "scoring (baseline)": (runner, "evaluate_baseline"),
    "anchors": (runner, "evaluate_input_compression"),
    "report": (launchers, "collect"),
}


class StageClock:
    """Wall time and backbone images per stage, from wrappers that call the engine's own functions."""

    def __init__(self):
        self.seconds = collections.Counter()
        self.images = collections.Counter()
        self.stage = "start-up, data and models loaded"
        self.originals = []

    def wrap(self, stage: str, module, name: str) -> None:
        """Time ``module.name``'s calls as ``stage``, less the time of stages called inside them."""
        original = getattr(module, name)

        def timed(*args, **kwargs):
            outer, self.stage = self.stage, stage
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.seconds[stage] += elapsed
                self.seconds[outer] -= elapsed
                self.stage = outer

        self.originals.append((module, name, original))
        setattr(module, name, timed)

    def count(self, module, inputs, output) -> None:
        """ViT-B/32's patch embedding: a 32 x 32 stride convolution, once per image encoded."""
        if isinstance(module, torch.nn.Conv2d) and module.stride == (32, 32):
            self.images[self.stage] += int((inputs[0].flatten(1) != 0).any(dim=1).sum())

    def restore(self) -> None:
        for module, name, original in reversed(self.originals):
            setattr(module, name, original)


def study_argv(data: Path, output: Path, epochs: int, accelerator: str) -> list[str]:
    return ["sweep", "--model", "vit", "--weights", "none", "--data_path", str(data),
            "--output_dir", str(output), "--quantizer_type", "vq", "fsq", "lfq", "eb",
            "--num_vectors", "8", "16", "32", "64", "128",
            "--lambdas", "0.1", "0.3", "1", "3", "10", "--seeds", "1", "--epochs", str(epochs),
            "--jpeg_qualities", "20", "80", "--launcher", "serial", "--accelerator", accelerator]  # fmt: skip


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="share of Pet's image counts (default: 1)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (default: cpu)")
    args = parser.parse_args()
    counts = {split: max(8, round(n * args.scale)) for split, n in PET.items()}
    clock = StageClock()
    for stage, (module, name) in STAGES.items():
        clock.wrap(stage, module, name)
    hook = torch.nn.modules.module.register_module_forward_hook(clock.count)
    with tempfile.TemporaryDirectory(dir=Path.cwd()) as folder:
        data = Path(folder) / "data"
        make_synthetic_dataset(data, counts["trainval"], counts["test"], seed=0, min_size=200, max_size=500)
        started = time.perf_counter()
        try:
            cli.main(study_argv(data, Path(folder) / "study", args.epochs, args.accelerator))
        finally:
            wall = time.perf_counter() - started
            hook.remove()
            clock.restore()
    report(clock, wall, counts, args)


def report(clock: StageClock, wall: float, counts: dict, args) -> None:
    clock.seconds[clock.stage] += wall  # what no stage did: start-up, loading data and models
    # the images a stage's cost grows with, for the extrapolation to Pet's counts
    grows_with = {"feature passes": ("trainval", "test"), "training": ("trainval",), "scoring": ("test",),
                  "scoring (baseline)": ("test",), "anchors": ("test",), "report": ("test",),
                  clock.stage: ()}  # fmt: skip
    print(f"\n{counts['trainval']} trainval and {counts['test']} test images (scale {args.scale}), "
          f"{args.epochs} epochs, {args.accelerator}; wall {wall / 60:.1f} min")  # fmt: skip
    print("| stage | wall (s) | backbone images | extrapolated to Pet's counts (s, an estimate) |")
    print("|---|---:|---:|---:|")
    extrapolated = 0.0
    for stage, splits in grows_with.items():
        measured = sum(counts[split] for split in splits)
        factor = sum(PET[split] for split in splits) / measured if splits else 1.0
        extrapolated += clock.seconds[stage] * factor
        print(f"| {stage} | {clock.seconds[stage]:.0f} | {clock.images[stage]} | "
              f"{clock.seconds[stage] * factor:.0f} |")  # fmt: skip
    print(f"| **total** | {wall:.0f} | {sum(clock.images.values())} | {extrapolated:.0f} "
          f"({extrapolated / 3600:.2f} h) |")  # fmt: skip
    own = sum(n for stage, n in clock.images.items() if stage != "anchors")
    print(
        f"backbone passes over the study's images: {own / sum(counts.values()):.2f}; the anchors' "
        f"restored test images: {clock.images['anchors'] / counts['test']:.2f} passes of the test split"
    )


if __name__ == "__main__":
    main()
