"""The seed's commands, run as a user runs them: scripts from inside the package directory."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import run_cli, torchmetrics_miou
from PIL import Image

import embeddings_squeeze
from embeddings_squeeze.config import DataConfig
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.setup import datamodule_for
from embeddings_squeeze.utils.figures import figure_size_pixels

PACKAGE_DIR = Path(embeddings_squeeze.__file__).parent


def run(*commands, cwd=PACKAGE_DIR):
    """Run one command (its words as arguments) or several side by side (each a list); all must pass."""
    if not isinstance(commands[0], list):
        commands = [list(commands)]
    processes = [
        subprocess.Popen(
            [str(a) for a in argv], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for argv in commands
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    completed = [subprocess.CompletedProcess(argv, 0, *output) for argv, output in zip(commands, outputs)]
    return completed[0] if len(completed) == 1 else completed


def test_seed_workflow(tmp_path):
    data = tmp_path / "data"
    # in-process: the module entry point has its own test below
    assert run_cli("make-data", "--root", data, "--n-trainval", 12, "--n-test", 5, "--min-size", 48,
                   "--max-size", 80) == 0  # fmt: skip
    outputs = tmp_path / "outputs"
    tiny = ["--weights", "none", "--image_size", 64, "--data_path", data, "--output_dir", outputs]
    # the two trainings are independent: run them side by side, as a user with two terminals would
    _, squeezing = run(
        [sys.executable, "train_baseline.py", "--model", "vit", "--epochs", 1, "--batch_size", 4,
         "--experiment_name", "my_baseline", *tiny],
        [sys.executable, "squeeze.py", "--model", "vit", "--epochs", 1, "--batch_size", 4,
         "--experiment_name", "my_vq", "--num_vectors", 16, *tiny],
    )  # fmt: skip

    baseline_dir = outputs / "my_baseline_baseline" / "version_0"
    vq_dir = outputs / "my_vq" / "version_0"
    # a quiet console: what trains, then one line with the result and the next command
    console = squeezing.stdout + squeezing.stderr
    assert "Tip:" not in console and "Traceback" not in console and "| Name" not in console
    assert "training: head " in console and ", bottleneck " in console and "frozen: vit's" in console
    assert "in eval mode; on cpu" in console  # Lightning's own status lines are replaced by this one
    assert "Seed set" not in console and "GPU available" not in console and "stopped:" not in console
    last = squeezing.stdout.strip().splitlines()[-1]
    assert last.startswith("done: 1 epoch, best val mIoU ") and f"checkpoint {vq_dir / 'last.ckpt'}" in last
    assert f"next: 'embeddings-squeeze visualize --vq_checkpoint {vq_dir / 'last.ckpt'}" in last
    for run_dir in (baseline_dir, vq_dir):
        assert (run_dir / "last.ckpt").is_file() and (run_dir / "hparams.yaml").is_file()
        assert list(run_dir.glob("events.out.tfevents.*"))
        config = json.loads((run_dir / "config.json").read_text())
        assert config["versions"]["torch"] and config["model"]["backbone"] == "vit"
        split = json.loads((run_dir / "split.json").read_text())
        assert len(split["train"]) + len(split["val"]) == 12 and len(split["test"]) == 5

    visualizations = tmp_path / "visualizations"
    run(sys.executable, "visualize.py", "--vq_checkpoint", vq_dir / "last.ckpt",
        "--baseline_checkpoint", baseline_dir / "last.ckpt", "--dataset_split", "test",
        "--n_best", 2, "--n_worst", 2, "--output_dir", visualizations, "--data_path", data)  # fmt: skip
    for name in ("best_results_test.png", "worst_results_test.png"):
        with Image.open(visualizations / name) as figure:
            assert figure.size == figure_size_pixels(2)
    with open(visualizations / "scores_test.csv") as scores:
        assert len(list(csv.DictReader(scores))) == 5
    # the numbers the command printed and stored, recomputed here from the checkpoints by torchmetrics
    summary = json.loads((visualizations / "summary_test.json").read_text())
    for key, kind, run_dir in (
        ("baseline_miou", "baseline", baseline_dir),
        ("squeezed_miou", "squeezed", vq_dir),
    ):
        module = load_module(run_dir / "last.ckpt", kind)
        datamodule = datamodule_for(DataConfig(data_path=str(data)), module.model_config, seed=0)
        datamodule.setup()
        assert summary[key] == pytest.approx(torchmetrics_miou(module, datamodule), abs=1e-6), key

    # a second run never touches the first: it gets the next version (in-process: no new interpreter needed)
    assert run_cli("train-baseline", "--epochs", 1, "--experiment_name", "my_baseline", *tiny) == 0
    assert (outputs / "my_baseline_baseline" / "version_1" / "last.ckpt").is_file()


def test_console_command_and_module_entry_point(tmp_path):
    console = Path(sys.executable).parent / "embeddings-squeeze"  # installed beside this interpreter
    assert "make-data" in run(console, "--help").stdout
    # the module entry point runs the same command as the console script and in-process calls
    flags = ["--n-trainval", 3, "--n-test", 2, "--min-size", 32, "--max-size", 40, "--seed", 5]
    run(sys.executable, "-m", "embeddings_squeeze", "make-data", "--root", tmp_path / "module", *flags)
    assert run_cli("make-data", "--root", tmp_path / "in_process", *flags) == 0
    trees = [
        sorted(p.relative_to(tmp_path / n) for p in (tmp_path / n).rglob("*"))
        for n in ("module", "in_process")
    ]
    assert trees[0] == trees[1] and len(trees[0]) > 10
    for relative in trees[0]:
        if (tmp_path / "module" / relative).is_file():
            assert (tmp_path / "module" / relative).read_bytes() == (
                tmp_path / "in_process" / relative
            ).read_bytes()


def test_seed_integration_script():
    assert "3 passed, 0 failed" in run(sys.executable, "test_simplified_baseline.py").stdout
