"""A newcomer's second hour: runs that remember their data, checkpoints named by their run folder,
a missing checkpoint that says which command makes it, unpaired models refused, a report that shows a
sound model's figures, a sweep's time left."""

import json
import logging
import shutil
from pathlib import Path

import torch
from helpers import TEST_MODEL, TINY, one_line_error, run_cli

from embeddings_squeeze.config import (
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.engine.launchers import _time_left
from embeddings_squeeze.engine.sweep import Job, JobKind, Plan, Sweep, SweepSpec
from embeddings_squeeze.engine.sweep.collect import shown_model


def visualize(trained, output_dir, *extra):
    return ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", trained["vq"],
            "--output_dir", output_dir, "--accelerator", "cpu", "--model", TEST_MODEL, *extra]  # fmt: skip


def test_visualize_from_another_folder_finds_the_data_the_runs_were_trained_on(
    trained, pet_root, tmp_path, monkeypatch, caplog, unreachable_network
):
    monkeypatch.chdir(tmp_path)  # no ./data here: the default --data_path would try a download
    with caplog.at_level(logging.INFO):
        assert run_cli(*visualize(trained, tmp_path / "vis")) == 0
    said = f"using the data the VQ model was trained on: {pet_root.resolve()} (--data_path gives other data)"
    assert said in caplog.messages
    assert not (tmp_path / "data").exists()
    with_path = tmp_path / "given"
    assert run_cli(*visualize(trained, with_path, "--data_path", pet_root)) == 0
    found, given = (json.loads((p / "summary_test.json").read_text()) for p in (tmp_path / "vis", with_path))
    for key in ("images", "baseline_miou", "squeezed_miou"):  # the same data, whoever named it
        assert found[key] == given[key]


def test_a_resumed_run_finds_the_data_it_was_trained_on_from_another_folder(
    trained, pet_root, tmp_path, monkeypatch, caplog, unreachable_network
):
    run = shutil.copytree(trained["baseline"].parent, tmp_path / "tiny_baseline" / "version_0")
    monkeypatch.chdir(tmp_path)  # no ./data here: the default --data_path would try a download
    argv = ["train-baseline", *TINY, "--output_dir", tmp_path, "--experiment_name", "tiny", "--seed", 3,
            "--epochs", 3, "--resume", run / "last.ckpt"]  # fmt: skip
    with caplog.at_level(logging.INFO):
        assert run_cli(*argv) == 0
    said = f"using the data the run was trained on: {pet_root.resolve()} (--data_path gives other data)"
    assert said in caplog.messages
    assert torch.load(run / "last.ckpt", weights_only=True)["epoch"] == 2  # its third epoch, trained
    # a run folder where no epoch completed restarts there, on the folder its config.json records
    restarted = tmp_path / "tiny_baseline" / "version_1"
    restarted.mkdir()
    shutil.copy(run / "config.json", restarted)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert run_cli(*argv[:-1], restarted, "--epochs", 1) == 0
    assert said in caplog.messages and (restarted / "last.ckpt").is_file()
    assert not (tmp_path / "data").exists()


def test_a_recorded_data_folder_that_is_gone_falls_back_to_the_default_and_says_so(
    trained, tmp_path, monkeypatch, capsys, caplog, unreachable_network
):
    copy = shutil.copytree(trained["vq"].parent, tmp_path / "vq" / "version_0")  # with its split.json
    checkpoint = torch.load(copy / "last.ckpt", weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["trained_data_path"] = str(tmp_path / "gone")
    torch.save(checkpoint, copy / "last.ckpt")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO):
        assert run_cli(*visualize({**trained, "vq": copy / "last.ckpt"}, tmp_path / "vis")) == 2
    assert f"the data the VQ model was trained on is no longer in {tmp_path / 'gone'}; looking in ./data" in (
        caplog.messages
    )
    assert "make-data" in one_line_error(capsys)  # ./data has no dataset: the way to make one


def test_a_run_folder_stands_for_its_last_checkpoint(trained, pet_root, tmp_path, caplog):
    runs = {**trained, "vq": trained["vq"].parent}
    with caplog.at_level(logging.INFO):
        assert run_cli(*visualize(runs, tmp_path / "vis", "--data_path", pet_root)) == 0
    assert f"{trained['vq'].parent} is a run folder: using its last.ckpt" in caplog.messages
    summary = json.loads((tmp_path / "vis" / "summary_test.json").read_text())
    assert summary["vq_checkpoint"] == str(trained["vq"])


def test_a_folder_without_a_checkpoint_lists_the_runs_in_it(trained, pet_root, tmp_path, capsys):
    outputs = trained["outputs"]
    runs = {**trained, "vq": outputs}
    assert run_cli(*visualize(runs, tmp_path / "vis", "--data_path", pet_root)) == 2
    found = ", ".join(str(p) for p in sorted(outputs.glob("*/version_*/last.ckpt")))
    assert one_line_error(capsys) == (
        f"error: {outputs} is a folder without a last.ckpt; pass a checkpoint file (checkpoints found "
        f"there: {found})"
    )


def test_a_checkpoint_not_yet_trained_says_to_train_it_first(trained, pet_root, tmp_path, capsys):
    # the README's workflow: outputs/ holds the baseline (and other runs), the VQ model is not trained yet
    missing = trained["outputs"] / "my_vq" / "version_0" / "last.ckpt"
    runs = {**trained, "vq": missing}
    assert run_cli(*visualize(runs, tmp_path / "vis", "--data_path", pet_root)) == 2
    assert one_line_error(capsys) == (
        f"error: checkpoint not found: {missing}; nothing has been trained there yet: train it first with "
        "'embeddings-squeeze squeeze' (it saves <output_dir>/<experiment_name>/version_N/last.ckpt)"
    )


def test_the_readmes_quick_check_sizes_train_the_default_backbone(pet_root, tmp_path):
    """The README's 'Quick checks' flags, as typed, on the default --model (ViT-B/32)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    tip = readme.split("Quick checks: ", 1)[1].split("(", 1)[0]
    flags = [word.strip("`,.") for word in tip.split() if word.strip("`,.")]
    assert flags[0] == "--subset_size" and "--image_size" in flags
    flags[1] = "4"  # the tiny data has fewer images than the tip's 200
    argv = ["train-baseline", *flags, "--weights", "none", "--data_path", pet_root, "--output_dir", tmp_path,
            "--epochs", 1, "--accelerator", "cpu", "--feature_precision", "float32"]  # fmt: skip
    assert run_cli(*argv) == 0


def test_models_trained_on_other_splits_are_refused_unless_compared_as_unpaired(
    trained, pet_root, tmp_path, capsys, caplog
):
    checkpoint = torch.load(trained["vq"], weights_only=True)
    checkpoint["datamodule_hyper_parameters"]["split_seed"] = 7  # as if trained on another split
    checkpoint["datamodule_hyper_parameters"]["batch_size"] = 8  # and with another batch size
    other = tmp_path / "other_split.ckpt"
    torch.save(checkpoint, other)
    runs = {**trained, "vq": other}
    with caplog.at_level(logging.INFO):
        assert run_cli(*visualize(runs, tmp_path / "refused", "--data_path", pet_root)) == 2
    assert one_line_error(capsys) == (
        "error: the checkpoints were trained on different data or splits (split_seed (baseline: 42, VQ: 7)), "
        "so the comparison would not be paired; train them on the same --data_path and split, or pass "
        "--unpaired to compare anyway"
    )
    assert not caplog.messages  # the refusal alone: no note of the settings before it
    assert not (tmp_path / "refused").exists()
    with caplog.at_level(logging.INFO):
        assert run_cli(*visualize(runs, tmp_path / "vis", "--data_path", pet_root, "--unpaired")) == 0
    assert (
        "note: the models were trained with different settings: batch_size (baseline: 4, VQ: 8)"
        in caplog.messages
    )
    warning = ("warning: not paired by training: the models were trained on different data or splits "
               "(split_seed (baseline: 42, VQ: 7))")  # fmt: skip
    summary = json.loads((tmp_path / "vis" / "summary_test.json").read_text())
    assert warning in summary["warnings"] and summary["paired_by_training"] is False
    printed = capsys.readouterr().out  # the console's summary
    assert warning in printed
    pairing = "differences paired on the same images (but not by training: see the warning)"
    (header,) = [line for line in printed.splitlines() if line.startswith("test split: ")]
    assert pairing in header  # the table's header says so too
    page = (tmp_path / "vis" / "index.html").read_text()
    assert warning in page and pairing in page


def test_a_reference_trained_on_another_split_is_refused_too(trained, pet_root, tmp_path, capsys):
    checkpoint = torch.load(trained["vq"], weights_only=True)  # a squeezed model stands in for it
    checkpoint["datamodule_hyper_parameters"]["split_seed"] = 7
    other = tmp_path / "reference.ckpt"
    torch.save(checkpoint, other)
    argv = visualize(trained, tmp_path / "refused", "--data_path", pet_root, "--reference_checkpoint", other)
    assert run_cli(*argv) == 2
    assert "(split_seed (VQ: 42, reference: 7))" in one_line_error(capsys)
    assert not (tmp_path / "refused").exists()


def test_the_same_split_read_from_another_copy_of_the_data_is_paired(trained, pet_root, tmp_path, caplog):
    copy = shutil.copytree(trained["vq"].parent, tmp_path / "vq" / "version_0")  # with its split.json
    checkpoint = torch.load(copy / "last.ckpt", weights_only=True)
    recorded = checkpoint["datamodule_hyper_parameters"]["trained_data_path"]
    checkpoint["datamodule_hyper_parameters"]["trained_data_path"] = "/scratch/job7/pets"  # a node's copy
    torch.save(checkpoint, copy / "last.ckpt")
    with caplog.at_level(logging.INFO):
        argv = visualize({**trained, "vq": copy / "last.ckpt"}, tmp_path / "vis", "--data_path", pet_root)
        assert run_cli(*argv) == 0
    assert any(
        f"trained_data_path (baseline: {recorded}, VQ: /scratch/job7/pets)" in m for m in caplog.messages
    )
    summary = json.loads((tmp_path / "vis" / "summary_test.json").read_text())
    assert (
        not any("not paired" in warning for warning in summary["warnings"]) and summary["paired_by_training"]
    )


def test_a_data_path_typed_out_is_used_even_where_the_runs_remember_another(
    trained, tmp_path, capsys, monkeypatch, unreachable_network
):
    monkeypatch.chdir(tmp_path)  # the default's own spelling, typed: the user meant this folder
    assert run_cli(*visualize(trained, tmp_path / "vis", "--data_path", "./data")) == 2
    assert "not found in data" in one_line_error(capsys)


def test_the_report_shows_a_sound_models_figures_and_marks_a_degenerate_one(tmp_path):
    """Figures exist for each first-seed model the sweep varies; the report shows the preferred one
    (the first type's finest) unless its predictions are degenerate, and says which it passed over."""
    plan = Plan(ModelConfig(), DataConfig(), OptimizerConfig(), TrainingConfig(), RuntimeConfig())
    quantizers = tuple(
        QuantizerConfig(quantizer_type=kind, num_vectors=k) for kind in ("vq", "fsq") for k in (8, 64)
    )
    work = Sweep(SweepSpec(plan, quantizers, (42, 43), (), {}, ()), tmp_path)
    preferred = ["vq_K64_seed42", "fsq_K64_seed42", "fsq_K8_seed42", "vq_K8_seed42"]
    assert work.spec.figure_models() == preferred
    for name in preferred:
        work.figures_of(name).mkdir(parents=True)
        (work.figures_of(name) / "index.html").write_text("a page")
    background = "predicts background for 100.0% of the pixels"
    rows = [
        {"name": name, "degenerate": background if name.startswith("vq_K64") else None} for name in preferred
    ]
    assert shown_model(work, rows) == (
        "fsq_K64_seed42",
        f" (shown instead of vq_K64_seed42, which {background})",
    )
    everything = [{**row, "degenerate": background} for row in rows]
    assert shown_model(work, everything) == (
        "vq_K64_seed42",
        f" (warning: it {background}, as every model with figures does)",
    )
    sound = [{**row, "degenerate": None} for row in rows]
    assert shown_model(work, sound) == ("vq_K64_seed42", "")


def test_the_time_left_takes_each_kind_at_its_own_pace_and_counts_the_kinds_not_timed_yet():
    """A baseline's 50 epochs said nothing of a 3-epoch squeezed job's time: jobs of a kind not timed
    yet are counted, not priced (a 4-model sweep said 4 min left for 37 s of work)."""

    def job(name, kind):
        return Job(name, kind, 0)

    remaining = [job("baseline_seed43", JobKind.BASELINE), job("vq_K8", JobKind.SQUEEZED),
                 job("vq_K16", JobKind.SQUEEZED), job("jpeg_q50", JobKind.INPUT)]  # fmt: skip
    assert _time_left({JobKind.FEATURES: [100.0]}, remaining) == ""  # the feature pass says nothing
    assert _time_left({JobKind.FEATURES: [100.0], JobKind.BASELINE: [10.0]}, remaining) == (
        "; about 10 s left at the pace so far, and 3 job(s) of kinds not timed yet"
    )
    took = {JobKind.FEATURES: [100.0], JobKind.BASELINE: [50.0], JobKind.SQUEEZED: [4.0, 6.0],
            JobKind.INPUT: [2.0]}  # fmt: skip
    assert _time_left(took, remaining) == "; about 62 s left at the pace so far"  # 50 + 5 + 5 + 2


def test_a_baseline_capped_below_the_squeezed_models_epochs_is_refused(pet_root, tmp_path, capsys):
    argv = [*TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 5, "--baseline_epochs", 2]
    assert run_cli("sweep", *argv) == 2
    assert "--baseline_epochs 2 is below --epochs 5" in one_line_error(capsys)
    assert not any(tmp_path.iterdir())  # refused before anything was made
