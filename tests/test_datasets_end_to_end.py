"""The commands on Pascal VOC and on an image folder, with timm backbones: train, squeeze, visualize,
encode/decode and a one-epoch sweep, offline."""

import csv
import json
import shutil

import numpy as np
import pytest
import timm
from helpers import one_line_error, parse, run_cli, tiny_datamodule, torchmetrics_miou, visualize_summary
from PIL import Image

from embeddings_squeeze import decode, encode, squeeze, sweep, train_baseline
from embeddings_squeeze.data.labels import IGNORE_INDEX, VOC_CLASS_NAMES
from embeddings_squeeze.data.synthetic_scenes import FOLDER_CLASSES, FOLDER_COLOURS
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.utils.figures import figure_size_pixels

COMBINATIONS = {"voc": "timm:resnet18", "folder": "timm:vit_tiny_patch16_224"}


def common(dataset, root, outputs):
    return ["--dataset", dataset, "--model", COMBINATIONS[dataset], "--weights", "none", "--image_size", 64,
            "--batch_size", 4, "--accelerator", "cpu", "--data_path", root, "--output_dir", outputs,
            "--epochs", 1, "--experiment_name", dataset]  # fmt: skip


@pytest.fixture(scope="module")
def runs(voc_root, folder_root, tmp_path_factory) -> dict:
    """Per dataset: its data, a baseline and a VQ checkpoint, and the visualize summary."""
    outputs = tmp_path_factory.mktemp("runs")
    found = {}
    for dataset, root in (("voc", voc_root), ("folder", folder_root)):
        argv = common(dataset, root, outputs)
        baseline = train_baseline.main(parse(train_baseline, *argv))
        vq = squeeze.main(parse(squeeze, *argv, "--num_vectors", 8))
        figures = outputs / f"vis_{dataset}"
        summary = visualize_summary(
            baseline, vq, root, figures, "--model", COMBINATIONS[dataset], "--n_best", 2, "--n_worst", 1,
            "--accelerator", "cpu",
        )  # fmt: skip
        found[dataset] = {
            "root": root,
            "baseline": baseline,
            "vq": vq,
            "figures": figures,
            "summary": summary,
        }
    return found


@pytest.mark.parametrize("dataset,names", [("voc", VOC_CLASS_NAMES), ("folder", FOLDER_CLASSES)])
def test_checkpoints_and_outputs_know_their_dataset(runs, dataset, names):
    run = runs[dataset]
    info = read_checkpoint(run["vq"])["embeddings_squeeze"]
    model_name = COMBINATIONS[dataset].removeprefix("timm:")
    assert info["dataset"] == dataset and info["class_names"] == list(names)
    assert info["backbone"] == f"timm:{model_name}" and info["timm_model"] == model_name
    assert info["timm_version"] == timm.__version__
    summary = run["summary"]
    assert list(summary["baseline_class_iou"]) == list(names) == list(summary["squeezed_class_iou"])
    for kind, rows in (("best", 2), ("worst", 1)):
        with Image.open(run["figures"] / f"{kind}_results_test.png") as figure:
            # four panels wide; the summary's warnings under the title, a line or more each
            warned = figure_size_pixels(rows, len(names), len(summary["warnings"]))
            assert figure.size[0] == warned[0] and figure.size[1] >= warned[1]
    with open(run["figures"] / "scores_test.csv") as handle:
        assert len(list(csv.DictReader(handle))) == summary["images"] == 4


def test_voc_miou_by_hand_ignores_boundaries(runs):
    run = runs["voc"]
    baseline = load_module(run["baseline"], "baseline")
    data = tiny_datamodule(run["root"], baseline.model_config, split_seed=42)
    data.setup()
    intersections = np.zeros(len(VOC_CLASS_NAMES))
    unions = np.zeros(len(VOC_CLASS_NAMES))
    for position in range(len(data.splits["test"])):
        image, target, _ = data.splits["test"][position]
        prediction = baseline.predict_masks(image[None])[0].numpy()
        target = target.numpy()
        labelled = target != IGNORE_INDEX
        for label in range(len(VOC_CLASS_NAMES)):
            predicted, actual = (prediction == label) & labelled, (target == label) & labelled
            intersections[label] += (predicted & actual).sum()
            unions[label] += (predicted | actual).sum()
    present = unions > 0  # by hand at the input size: the summary's score there
    expected = (intersections[present] / unions[present]).mean()
    assert run["summary"]["baseline_miou_input_size"] == pytest.approx(expected)


def test_decoded_masks_use_the_datasets_colours(runs, tmp_path, capsys):
    run = runs["folder"]
    image = sorted((run["root"] / "images").iterdir())[0]
    payloads = encode.main(parse(encode, "--checkpoint", run["vq"], image, "-o", tmp_path / "payloads"))
    masks = decode.main(parse(decode, "--checkpoint", run["vq"], *payloads, "-o", tmp_path / "masks"))
    with Image.open(masks[0]) as mask:
        palette = mask.getpalette()
    assert [tuple(palette[3 * i : 3 * i + 3]) for i in range(len(FOLDER_COLOURS))] == list(FOLDER_COLOURS)
    argv = ["decode", "--checkpoint", run["vq"], *payloads, "-o", tmp_path / "again", "--dataset", "voc"]
    assert run_cli(*argv) == 2
    assert "was trained on --dataset folder, not voc" in one_line_error(capsys)


def test_visualize_refuses_data_with_other_classes(runs, tmp_path, capsys):
    run = runs["folder"]
    other = tmp_path / "other"
    shutil.copytree(run["root"], other)
    described = json.loads((other / "classes.json").read_text())
    described["names"][2] = "crate"
    (other / "classes.json").write_text(json.dumps(described))
    argv = ["visualize", "--baseline_checkpoint", run["baseline"], "--vq_checkpoint", run["vq"],
            "--data_path", other, "--model", COMBINATIONS["folder"],
            "--output_dir", tmp_path / "vis"]  # fmt: skip
    assert run_cli(*argv) == 2
    assert "label 2 is 'crate' there, 'box' in the checkpoint" in one_line_error(capsys)


def test_one_epoch_sweep_on_a_folder_with_a_timm_cnn(runs, tmp_path):
    argv = ["--dataset", "folder", "--model", "timm:resnet18", "--weights", "none", "--image_size", 64,
            "--batch_size", 4, "--accelerator", "cpu", "--data_path", runs["folder"]["root"],
            "--output_dir", tmp_path, "--epochs", 1, "--quantizer_type", "vq", "--num_vectors", 8,
            "--jpeg_qualities", 50]  # fmt: skip
    rows = sweep.main(parse(sweep, *argv))
    vq_row = next(row for row in rows if row["kind"] == "squeezed")
    assert {f"iou_{name}" for name in FOLDER_CLASSES} <= set(vq_row)
    module = load_module(vq_row["checkpoint"], "squeezed")
    data = tiny_datamodule(runs["folder"]["root"], module.model_config)
    data.setup()
    assert vq_row["miou"] == pytest.approx(torchmetrics_miou(module, data), abs=1e-6)
    with open(tmp_path / "sweep.csv") as handle:
        assert {f"iou_{name}" for name in FOLDER_CLASSES} <= set(next(csv.DictReader(handle)))
    assert "timm:resnet18 (none weights), image folder test" in (tmp_path / "report.html").read_text()


def test_a_voc_sweep_ends_with_its_report_and_intervals_around_their_estimates(voc_root, tmp_path):
    """Many classes in few images: classes a resample of images lacks once put intervals beside their
    estimates and crashed the plot; now an interval holds its estimate or is withheld with a reason."""
    argv = ["sweep", "--dataset", "voc", "--model", "timm:resnet18", "--weights", "none", "--image_size", 64,
            "--batch_size", 4, "--accelerator", "cpu", "--data_path", voc_root, "--output_dir", tmp_path,
            "--epochs", 1, "--baseline_epochs", 2, "--quantizer_type", "vq", "--num_vectors", 8,
            "--jpeg_qualities", 50]  # fmt: skip
    assert run_cli(*argv) == 0
    assert (tmp_path / "report.html").stat().st_size > 0 and (
        tmp_path / "rate_quality.png"
    ).stat().st_size > 0
    stored = json.loads((tmp_path / "sweep.json").read_text())
    checked = 0
    for row in stored["rows"]:
        for key in [key for key in row if key.endswith("_low")]:
            column = key.removesuffix("_low")
            if row[key] is None and column in ("miou", "delta_miou"):
                # 4 test images: an object class is in one ground truth, too few to see how it varies
                assert row["interval_note"].startswith("a class of the mean in the ground truth of"), row[
                    "name"
                ]
            elif row[key] is not None:
                assert row[key] <= row[column] <= row[f"{column}_high"], (row["name"], column)
                checked += 1
    assert checked > 0  # pixel accuracy, free of classes, keeps its intervals


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model", "timm:no_such_model"], "unknown timm model 'no_such_model'"),
        (["--dataset", "nope"], "unknown --dataset 'nope'; choose pet, voc, folder"),
        (["--dataset", "voc", "--mask_mode", "binary"], "--mask_mode applies to --dataset pet"),
    ],
)
def test_bad_names_end_in_one_line(voc_root, tmp_path, capsys, flags, message):
    argv = ["train-baseline", "--weights", "none", "--data_path", voc_root, "--output_dir", tmp_path, *flags]
    assert run_cli(*argv) == 2
    assert message in one_line_error(capsys)
