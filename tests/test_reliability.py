"""Interrupts, kills, NaN losses, hostile checkpoints, bad paths and multi-process training."""

import csv
import json
import logging
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from helpers import (
    PROGRAM_COMMAND,
    TEST_MODEL,
    TINY,
    ctrl_c_as_in_a_shell,
    one_line_error,
    run_cli,
    tiny_command,
    tiny_datamodule,
)
from PIL import Image
from torchvision.models import vit_b_32

from embeddings_squeeze.data.samplers import (
    EpochShuffleSampler,
    ShardedEpochShuffleSampler,
    UnpaddedDistributedSampler,
)
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine import fitting
from embeddings_squeeze.engine.callbacks import AtomicCheckpointIO
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.utils.figures import figure_size_pixels


def wait_for(condition, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


# epochs of ViT-Ti at 64 px take ~0.1 s each here: 30 leave the signal ~3 s to land within training
RESUME_ARGS = [
    "--epochs",
    30,
    "--num_vectors",
    8,
    "--experiment_name",
    "r",
    "--seed",
    5,
    "--cache_features",
    "off",
]


@pytest.fixture(scope="module")
def uninterrupted(pet_root, tmp_path_factory) -> Path:
    output_dir = tmp_path_factory.mktemp("reference")
    in_process = tiny_command("squeeze", pet_root, output_dir, *RESUME_ARGS)[len(PROGRAM_COMMAND) :]
    assert run_cli(*in_process) == 0
    return output_dir / "r" / "version_0" / "last.ckpt"


def test_interrupted_runs_resume_to_the_same_result(pet_root, tmp_path, uninterrupted):
    # one run per signal, side by side: each needs a process of its own
    signals = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM}
    # the runs yield the CPU to this process, so the signal goes out as soon as an epoch is done
    runs = {
        name: subprocess.Popen(
            tiny_command("squeeze", pet_root, tmp_path / name, *RESUME_ARGS), stderr=subprocess.PIPE,
            text=True, preexec_fn=lambda: (os.nice(10), ctrl_c_as_in_a_shell()),
        )
        for name in signals
    }  # fmt: skip
    waiting = dict(signals)

    def signal_those_with_an_epoch_done() -> bool:  # each as soon as it has one, whichever is first
        for name in [n for n in waiting if (tmp_path / n / "r" / "version_0" / "last.ckpt").exists()]:
            runs[name].send_signal(waiting.pop(name))
        return not waiting

    wait_for(signal_those_with_an_epoch_done)
    for name, run in runs.items():
        last = tmp_path / name / "r" / "version_0" / "last.ckpt"
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 130, stderr[-2000:]
        assert "Traceback" not in stderr  # a real process ends in one line, however it stops
        message = stderr.strip().splitlines()[-1]
        assert (
            message.startswith("error: training interrupted during epoch") and f"--resume {last}" in message
        )
        assert " with: embeddings-squeeze squeeze --model " in message  # as typed, not python's own path
        assert (last.parent / "interrupted.ckpt").is_file()

        # resuming needs no process of its own
        resume = tiny_command("squeeze", pet_root, tmp_path / name, *RESUME_ARGS, "--resume")
        assert run_cli(*resume[len(PROGRAM_COMMAND) :]) == 0
        assert not (last.parent.parent / "version_1").exists()  # continued in the same run directory
        assert not (last.parent / "interrupted.ckpt").exists()  # the partial epoch, done again, is gone
        expected, got = state(uninterrupted), state(last)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), f"{name}: resumed run differs"


def test_sigkill_never_leaves_a_broken_last_checkpoint(pet_root, tmp_path):
    last = tmp_path / "k_baseline" / "version_0" / "last.ckpt"
    chance = random.Random(0)
    for _ in range(2):
        argv = tiny_command("train-baseline", pet_root, tmp_path, "--epochs", 200, "--experiment_name", "k")
        before = last.stat().st_mtime_ns if last.exists() else None
        run = subprocess.Popen(
            argv + (["--resume"] if before else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for(lambda: last.exists() and last.stat().st_mtime_ns != before)
        time.sleep(chance.uniform(0.0, 1.5))  # land anywhere, mid-write included
        run.kill()
        run.wait()
        assert load_module(last, "baseline").num_classes == 3


def test_nan_loss_stops_with_one_clear_line(pet_root, tmp_path, capsys):
    state = vit_b_32().state_dict()
    state["conv_proj.weight"][0, 0, 0, 0] = float("nan")  # a damaged weights file: every feature turns NaN
    weights = tmp_path / "damaged.pth"
    torch.save(state, weights)
    argv = ["train-baseline", *TINY, "--model", "vit", "--weights", weights, "--data_path", pet_root,
            "--output_dir", tmp_path]  # fmt: skip
    assert run_cli(*argv) == 2
    message = one_line_error(capsys)
    assert "training loss became nan at epoch 0" in message and "no checkpoint was saved yet" in message
    assert not (tmp_path / "vit_baseline").exists()  # a run that saved nothing leaves no folder


def _evil_checkpoint(tmp_path) -> tuple[Path, Path]:
    class CreatesFileWhenLoaded:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.ckpt"
    torch.save({"embeddings_squeeze": CreatesFileWhenLoaded(), "state_dict": {}}, path)
    return path, marker


@pytest.mark.parametrize(
    "command", ["visualize-vq", "visualize-baseline", "encode", "decode", "resume-baseline", "resume-vq"]
)
def test_checkpoint_that_would_run_code_is_refused_everywhere(trained, pet_root, tmp_path, capsys, command):
    evil, marker = _evil_checkpoint(tmp_path)
    common = ["--data_path", pet_root, "--output_dir", tmp_path / "out"]
    argv = {
        "visualize-vq": [
            "visualize",
            "--vq_checkpoint",
            evil,
            "--baseline_checkpoint",
            trained["baseline"],
            *common,
        ],
        "visualize-baseline": [
            "visualize",
            "--vq_checkpoint",
            trained["vq"],
            "--baseline_checkpoint",
            evil,
            *common,
        ],
        "encode": ["encode", "--checkpoint", evil, "image.jpg", "-o", tmp_path / "out"],
        "decode": ["decode", "--checkpoint", evil, "image.esq", "-o", tmp_path / "out"],
        "resume-baseline": ["train-baseline", *TINY, "--resume", evil, *common],
        "resume-vq": ["squeeze", *TINY, "--resume", evil, *common],
    }[command]
    assert run_cli(*argv) == 2
    message = one_line_error(capsys)
    assert "refused" in message and not marker.exists()
    # our words on one line, not torch's multi-line hint with its terminal escape codes
    assert "\x1b" not in message and "Weights only load failed" not in message


def test_output_dir_that_cannot_be_written(pet_root, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert run_cli("train-baseline", *TINY, "--data_path", pet_root, "--output_dir", blocker / "runs") == 2
    assert "cannot write to --output_dir" in one_line_error(capsys)


def test_corrupt_image_read_by_a_worker_process(tmp_path, capsys):
    base = make_synthetic_dataset(tmp_path / "data", 6, 2, min_size=48, max_size=48)
    victim = base / "images" / f"{(base / 'annotations' / 'trainval.txt').read_text().split()[0]}.jpg"
    victim.write_bytes(b"\xff\xd8 truncated jpeg")
    argv = ["train-baseline", *TINY, "--data_path", tmp_path / "data", "--output_dir", tmp_path / "runs"]
    assert run_cli(*argv, "--num_workers", 1, "--val_fraction", 0.5) == 2
    message = one_line_error(capsys)
    assert victim.stem in message and "fix or remove this file" in message


def test_resume_without_a_previous_run(pet_root, tmp_path, capsys):
    argv = ["train-baseline", *TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--resume"]
    assert run_cli(*argv) == 2
    assert "--resume found no run under" in one_line_error(capsys)


def test_unpadded_shards_cover_each_image_once():
    shards = [list(UnpaddedDistributedSampler(5, rank, 2)) for rank in range(2)]
    assert sorted(shards[0] + shards[1]) == [0, 1, 2, 3, 4]


def test_ddp_shards_are_the_batches_of_one_process_at_the_global_batch():
    single = list(EpochShuffleSampler(10, seed=3))
    shards = [list(ShardedEpochShuffleSampler(10, 3, rank, 2, batch_size=2)) for rank in range(2)]
    for start in range(0, 10, 4):  # global batches of 2 x 2 images
        step = start // 2
        assert shards[0][step : step + 2] + shards[1][step : step + 2] == single[start : start + 4]
    padded = [list(ShardedEpochShuffleSampler(5, 3, rank, 2, batch_size=2)) for rank in range(2)]
    assert len(padded[0]) == len(padded[1]) == 3  # equal steps: one image repeats
    assert sorted(set(padded[0] + padded[1])) == [0, 1, 2, 3, 4]


def test_two_process_ddp_matches_one_process_at_the_same_global_batch(trained, pet_root, tmp_path, capsys):
    # ViT-B/32's head has no BatchNorm, whose batch statistics would be per process; without k-means
    # and re-seeding (random draws) the only difference left is the order of floating-point sums
    common = ["--model", "vit", "--epochs", 2, "--val_fraction", 0.5, "--num_vectors", 8, "--seed", 1,
              "--no_kmeans_init", "--dead_code_threshold", 0, "--experiment_name", "run"]  # fmt: skip
    ddp = ["--devices", 2, "--strategy", "ddp", "--accelerator", "cpu"]
    argv = {
        "ddp": tiny_command("squeeze", pet_root, tmp_path / "ddp", *common, "--batch_size", 4, *ddp),
        "single": tiny_command("squeeze", pet_root, tmp_path / "single", *common, "--batch_size", 8),
        # with k-means and re-seeding the processes draw together: training ends only if every
        # process holds the same bottleneck (checked at the end of fit)
        "defaults": tiny_command(
            "squeeze", pet_root, tmp_path / "defaults", "--epochs", 1, "--num_vectors", 8, *ddp
        ),
        # the module is pickled to processes it spawns: its codebook's replacement counter too
        "spawn": tiny_command(
            "squeeze",
            pet_root,
            tmp_path / "spawn",
            "--epochs",
            1,
            "--num_vectors",
            8,
            "--devices",
            2,
            "--strategy",
            "ddp_spawn",
            "--experiment_name",
            "run",
        ),  # fmt: skip
    }
    runs = {
        name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, command in argv.items()
    }  # side by side: each needs processes of its own
    output = {}
    for name, run in runs.items():
        output[name] = run.communicate(timeout=600)
        assert run.returncode == 0, f"{name}: {output[name][1][-3000:]}"
    assert "bottleneck identical on all 2 processes" in "".join(output["defaults"])
    run_dir = tmp_path / "ddp" / "run" / "version_0"
    assert {"last.ckpt", "config.json", "split.json", "hparams.yaml", "rate.json"} <= {
        p.name for p in run_dir.iterdir()
    }
    assert [p.name for p in run_dir.parent.iterdir()] == ["version_0"]  # both processes used one directory
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    ddp, single = (torch.load(tmp_path / n / "run" / "version_0" / "last.ckpt", weights_only=True)
                   for n in ("ddp", "single"))  # fmt: skip
    assert ddp["global_step"] == single["global_step"] == 2  # one global batch of 8 per epoch
    # the two runs sum in different orders; on standardised (unit-scale) features that shows after two
    # Adam steps as up to 6e-6 in the projections (weights of 0.04-0.13)
    for key, value in single["state_dict"].items():
        assert torch.allclose(ddp["state_dict"][key].double(), value.double(), rtol=1e-4, atol=1e-5), key
    best = "ModelCheckpoint{'monitor': 'val/miou'"  # the callback that tracks the best validation mIoU
    scores = [next(v for k, v in c["callbacks"].items() if k.startswith(best))["best_model_score"]
              for c in (ddp, single)]  # fmt: skip
    assert float(scores[0]) == pytest.approx(float(scores[1]), abs=1e-6)
    rates = [
        json.loads((tmp_path / n / "run" / "version_0" / "rate.json").read_text()) for n in ("ddp", "single")
    ]
    assert rates[0]["payload_bytes_mean"] == rates[1]["payload_bytes_mean"]
    spawned = tmp_path / "spawn" / "run" / "version_0" / "last.ckpt"
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", spawned,
            "--data_path", pet_root, "--output_dir", tmp_path / "vis", "--accelerator", "cpu"]  # fmt: skip
    assert run_cli(*argv) == 0 and "VQ - baseline mIoU" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train-baseline", "--epochs", "0"], "--epochs: must be a positive integer"),
        (["train-baseline", "--epochs", "x"], "--epochs: must be a positive integer, got 'x'"),
        (["train-baseline", "--batch_size", "-2"], "--batch_size: must be a positive integer"),
        (["train-baseline", "--image_size", "0"], "--image_size: must be a positive integer"),
        (["train-baseline", "--model", "resnet"], "unknown --model 'resnet'"),
        (["squeeze", "--quantizer_type", "pq"], "invalid choice: 'pq'"),
    ],
)
def test_invalid_flags_are_refused_before_any_work(argv, message, capsys):
    assert run_cli(*argv) == 2
    assert message in capsys.readouterr().err


def test_deeplab_training_needs_two_images_per_batch(pet_root, tmp_path, capsys):
    argv = ["train-baseline", *TINY, "--model", "deeplab", "--data_path", pet_root, "--output_dir", tmp_path]
    assert run_cli(*argv, "--batch_size", 1) == 2
    assert "--batch_size 2 or more" in one_line_error(capsys)


def test_image_size_the_patch_does_not_divide(pet_root, tmp_path, capsys):
    argv = ["train-baseline", *TINY, "--model", "vit", "--data_path", pet_root, "--output_dir", tmp_path]
    assert run_cli(*argv, "--image_size", 100) == 2
    assert "divisible by 32" in one_line_error(capsys)


def test_checkpoint_from_an_incompatible_version(trained, pet_root, tmp_path, capsys):
    checkpoint = torch.load(trained["vq"], weights_only=True)
    del checkpoint["state_dict"]["bottleneck.project_out.weight"]
    damaged = tmp_path / "old.ckpt"
    torch.save(checkpoint, damaged)
    argv = [
        "visualize",
        "--vq_checkpoint",
        damaged,
        "--baseline_checkpoint",
        trained["baseline"],
        "--model",
        TEST_MODEL,
    ]
    assert run_cli(*argv, "--data_path", pet_root, "--output_dir", tmp_path / "out") == 2
    assert "does not match the model it describes" in one_line_error(capsys)


def test_zero_best_and_worst_rows(trained, pet_root, tmp_path):
    argv = ["visualize", "--vq_checkpoint", trained["vq"], "--baseline_checkpoint", trained["baseline"],
            "--model", TEST_MODEL, "--data_path", pet_root, "--output_dir", tmp_path]  # fmt: skip
    assert run_cli(*argv, "--n_best", 0, "--n_worst", 0) == 0
    with open(tmp_path / "scores_test.csv") as scores:
        ids = [row["image_id"] for row in csv.DictReader(scores)]
    data = tiny_datamodule(pet_root)
    data.setup()
    assert sorted(ids) == sorted(data.splits["test"].image_ids)  # every image scored, none drawn
    with Image.open(tmp_path / "best_results_test.png") as figure:
        assert figure.size == figure_size_pixels(1)  # the title over one empty row


class InterruptAfterSaving(AtomicCheckpointIO):
    """Ctrl-C arriving right after (or, with ``before=True``, instead of) the first best-epoch save."""

    fired = False
    before = False

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        hit = Path(path).name.startswith("best-epoch") and not InterruptAfterSaving.fired
        if hit and InterruptAfterSaving.before:
            InterruptAfterSaving.fired = True
            raise KeyboardInterrupt
        super().save_checkpoint(checkpoint, path, storage_options)
        if hit:
            InterruptAfterSaving.fired = True
            raise KeyboardInterrupt


@pytest.mark.parametrize("before", [False, True])
def test_interrupt_between_the_epoch_end_saves_leaves_a_resumable_run(
    pet_root, tmp_path, capsys, caplog, monkeypatch, before
):
    caplog.set_level(logging.INFO)
    monkeypatch.setattr(InterruptAfterSaving, "fired", False)
    monkeypatch.setattr(InterruptAfterSaving, "before", before)
    monkeypatch.setattr(fitting, "AtomicCheckpointIO", InterruptAfterSaving)
    argv = ["squeeze", *TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 2,
            "--num_vectors", 8, "--experiment_name", "race", "--cache_features", "off"]  # fmt: skip
    assert run_cli(*argv) == 130
    message = one_line_error(capsys)
    run_dir = tmp_path / "race" / "version_0"
    assert not (run_dir / "last.ckpt").exists()  # the interrupt landed before last.ckpt was written
    if before:  # no epoch was saved: restart in the same run directory
        assert "before any epoch completed" in message and message.endswith(f"--resume {run_dir}")
    else:  # epoch 0 was saved, in the best-epoch file only
        best = next(run_dir.glob("best-epoch*.ckpt"))
        assert "epochs up to 0 are saved" in message and message.endswith(f"--resume {best}")
    resume_from = message.rsplit("--resume ", 1)[1]
    monkeypatch.setattr(fitting, "AtomicCheckpointIO", AtomicCheckpointIO)
    assert run_cli(*argv, "--resume", resume_from) == 0
    assert (run_dir / "last.ckpt").is_file() and not (run_dir.parent / "version_1").exists()
    assert load_module(run_dir / "last.ckpt", "squeezed").bottleneck.code_histogram.sum() > 0
    assert "weights_only` was not set" not in caplog.text
