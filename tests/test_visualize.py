import csv
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TEST_MODEL, forward_mask, one_line_error, parse, run_cli, tiny_datamodule
from PIL import Image

from embeddings_squeeze import cli, decode, encode
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.engine.evaluation import CompareOptions, compare_models
from embeddings_squeeze.utils.comparison import Extremes
from embeddings_squeeze.utils.figures import COLUMNS, figure_size_pixels
from embeddings_squeeze.utils.iou import confusion_matrices, per_image_iou
from embeddings_squeeze.utils.metrics import METRICS, BoundaryF


def visualize_args(trained, pet_root, output_dir, *extra):
    return [
        "visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", trained["vq"],
        "--data_path", pet_root, "--output_dir", output_dir, "--accelerator", "cpu", "--model", TEST_MODEL,
        *extra,
    ]  # fmt: skip


def test_figures_csv_and_summary(trained, pet_root, tmp_path, capsys):
    out = tmp_path / "vis"
    assert run_cli(*visualize_args(trained, pet_root, out, "--n_best", 2, "--n_worst", 3)) == 0
    printed = capsys.readouterr().out
    assert "mIoU at the input size" in printed and "mean per-image IoU" in printed and "Holm p" in printed
    for name, rows in (("best_results_test.png", 2), ("worst_results_test.png", 3)):
        with Image.open(out / name) as figure:
            assert figure.size == figure_size_pixels(rows)
    assert len(COLUMNS) == 4
    with open(out / "scores_test.csv") as scores:
        rows = list(csv.DictReader(scores))
    assert len(rows) == 6 and len({row["image_id"] for row in rows}) == 6
    # each image's IoU by hand, at its mask's own size: over the classes in its ground truth or prediction
    baseline, vq = load_module(trained["baseline"], "baseline"), load_module(trained["vq"], "squeezed")
    data = tiny_datamodule(pet_root)
    data.setup()
    files = data.files["test"]
    by_hand = {}
    for position, image_id in enumerate(files.image_ids):
        image, mask = files[position][0], files.load(position, files.transform.native_labels).numpy()
        size = mask.shape
        predictions = (forward_mask(baseline, image, size), vq.decode_mask(vq.encode_image(image)[1], size))
        by_hand[image_id] = [
            np.mean(
                [((p == c) & (mask == c)).sum() / ((p == c) | (mask == c)).sum() for c in np.union1d(p, mask)]
            )
            for p in (prediction.numpy() for prediction in predictions)
        ]
    for row in rows:
        baseline_iou, vq_iou = by_hand[row["image_id"]]
        assert float(row["baseline_iou"]) == pytest.approx(baseline_iou, abs=1e-9)
        assert float(row["squeezed_iou"]) == pytest.approx(vq_iou, abs=1e-9)
        assert float(row["iou_difference"]) == pytest.approx(vq_iou - baseline_iou, abs=1e-9)
    summary = json.loads((out / "summary_test.json").read_text())
    mean_vq = sum(float(row["squeezed_iou"]) for row in rows) / len(rows)
    assert summary["squeezed_mean_image_iou"] == pytest.approx(mean_vq)
    assert summary["images"] == 6 and set(summary["squeezed_class_iou"]) == {"pet", "background", "border"}
    floor = summary["task_floor"]
    assert set(floor) == {"mask_png", "mask_webp", "mask_context"}
    assert f"context coder {floor['mask_context']['bytes_mean']:.0f} bytes" in printed


def test_more_rows_asked_than_images(trained, pet_root, tmp_path, caplog):
    out = tmp_path / "vis"
    assert (
        run_cli(
            *visualize_args(trained, pet_root, out, "--n_best", 50, "--n_worst", 0, "--dataset_split", "val")
        )
        == 0
    )
    with Image.open(out / "best_results_val.png") as figure:
        assert figure.size == figure_size_pixels(2)  # the validation split holds 2 images
    assert "only 2 scored images" in caplog.text


@pytest.mark.parametrize(
    "change,message",
    [
        ({"--model": "deeplab"}, f"pass --model {TEST_MODEL}"),
        ({"baseline_as_vq": True}, "--vq_checkpoint needs a squeezed"),
        ({"--vq_checkpoint": "missing.ckpt"}, "checkpoint not found"),
        ({"--data_path": "empty"}, "download failed"),
        ({"--dataset": "voc"}, "was trained on --dataset pet, not voc; pass --dataset pet"),
    ],
)
def test_user_mistakes_end_in_one_line(
    trained, pet_root, tmp_path, capsys, unreachable_network, change, message
):
    argv = visualize_args(trained, pet_root, tmp_path / "vis")
    if change.pop("baseline_as_vq", False):
        argv[argv.index("--vq_checkpoint") + 1] = trained["baseline"]
    for flag, value in change.items():
        value = tmp_path / value if flag not in ("--model", "--dataset") else value
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    assert run_cli(*argv) == 2
    assert message in one_line_error(capsys)


def test_checkpoints_on_different_backbones(trained, pet_root, tmp_path, capsys):
    checkpoint = torch.load(trained["baseline"], weights_only=True)
    checkpoint["embeddings_squeeze"]["backbone"] = "deeplab"
    other = tmp_path / "deeplab_baseline.ckpt"
    torch.save(checkpoint, other)
    argv = visualize_args({**trained, "baseline": other}, pet_root, tmp_path / "vis")
    assert run_cli(*argv) == 2
    assert "different backbones" in one_line_error(capsys)


def test_unknown_command(capsys):
    assert run_cli("compress") == 2
    assert "unknown command" in one_line_error(capsys)


def test_extremes_keep_only_the_ends_with_stable_ties():
    extremes = Extremes(n_best=2, n_worst=2)
    built = []
    for position, score in enumerate([0.5, 0.9, 0.1, 0.9, 0.3, 0.1, 0.6, float("nan")]):
        extremes.offer(score, position, lambda p=position: built.append(p) or p)
    assert extremes.best() == [1, 3]  # equal scores: the earlier image first
    assert extremes.worst() == [2, 5]  # an image without a score (NaN) is in neither list
    assert 6 not in built  # an item that never enters either list is never built


@pytest.mark.parametrize("batch_size", [1, 4])
def test_vq_prediction_is_what_the_receiver_decodes(trained, pet_root, tmp_path, batch_size):
    baseline, vq = load_module(trained["baseline"], "baseline"), load_module(trained["vq"], "squeezed")
    data = tiny_datamodule(pet_root, batch_size=batch_size)
    data.setup()
    split = data.files["test"]
    comparison = compare_models(
        baseline, vq, data, "test", torch.device("cpu"), CompareOptions(n_best=len(split))
    )
    shown = {item.image_id: item for item in comparison.rankings["iou"][0]}
    assert len(shown) == len(split)
    payloads = encode.main(
        parse(encode, "--checkpoint", trained["vq"], *split.image_paths, "-o", tmp_path / "esq")
    )
    masks = decode.main(parse(decode, "--checkpoint", trained["vq"], *payloads, "-o", tmp_path / "png"))
    for mask_path in masks:
        item = shown[mask_path.stem]
        with Image.open(mask_path) as mask:  # at the image's own size, as the figures draw it
            decoded = np.array(mask)
        assert np.array_equal(decoded, item.squeezed_pred), mask_path.stem
        # the decoded file scores what the comparison says, against the mask at its own size
        confusion = confusion_matrices(
            torch.from_numpy(decoded)[None], torch.from_numpy(item.target)[None].long(), 3
        )
        assert per_image_iou(confusion).item() == pytest.approx(item.squeezed_iou)


def test_error_lines_are_plain_single_lines():
    message = "refused:\n\x1b[1mdo those steps only if you trust the source\x1b[0m\n  more"
    assert cli.one_line(message) == "refused: do those steps only if you trust the source more"


def test_visualize_from_run_folders_copied_elsewhere(trained, pet_root, tmp_path):
    copies = {}
    for kind in ("baseline", "vq"):
        run_dir = trained[kind].parent
        copies[kind] = shutil.copytree(run_dir, tmp_path / "elsewhere" / kind) / "last.ckpt"
    runs_by_name = {"copied": copies, "original": trained}
    for name, runs in runs_by_name.items():
        argv = visualize_args(runs, pet_root, tmp_path / name, "--n_best", 1, "--n_worst", 1)
        assert run_cli(*argv) == 0
    copied, original = (
        json.loads((tmp_path / n / "summary_test.json").read_text()) for n in ("copied", "original")
    )
    for summary in (copied, original):
        del summary["baseline_checkpoint"], summary["vq_checkpoint"]
    assert copied == original  # the same models, rebuilt from the copies alone


def test_visualize_scores_from_the_training_cache_as_a_live_pass_does(trained, pet_root, tmp_path, caplog):
    """Runs that trained from a feature cache are scored from it: the first comparison builds the test
    split's entry (one encoder pass over the split), later ones run only the heads; the scores are a
    live pass's to the bit (the same runs copied without their cache). The baseline's pass (task floor,
    scores) is measured once on the cached split and read by later comparisons against it, which run
    its head only for the ranked images: the same scores, summary and figures as a live pass."""
    patch_embedding = type(load_module(trained["baseline"], "baseline").backbone.encoder.patch_embed)
    images = []

    def count(module, inputs, output):
        if type(module) is patch_embedding:  # not the grid-size probe (a zero image), images only
            images.append(int((inputs[0].flatten(1) != 0).any(dim=1).sum()))

    passes = {}
    for place in ("cached", "live"):
        runs = {kind: shutil.copytree(trained[kind].parent, tmp_path / place / kind) / "last.ckpt"
                for kind in ("baseline", "vq")}  # fmt: skip
        config_file = runs["vq"].parent / "config.json"
        if place == "cached":  # the cache folder the run records, without the test split's entry yet
            config = json.loads(config_file.read_text())
            assert Path(config["training"]["cache_dir"]).is_absolute()
            config["training"]["cache_dir"] = str((tmp_path / place / "cache").resolve())
            (tmp_path / place / "cache").mkdir()
            config_file.write_text(json.dumps(config))
        else:  # a checkpoint without its run folder's records
            config_file.unlink()
        for attempt in ("first", "again") if place == "cached" else ("first",):
            images.clear()
            hook = torch.nn.modules.module.register_module_forward_hook(count)
            caplog.clear()
            try:
                with caplog.at_level(logging.INFO):
                    assert run_cli(*visualize_args(runs, pet_root, tmp_path / place / attempt)) == 0
            finally:
                hook.remove()
            passes[place, attempt] = sum(images)
            read = any(message.startswith("task floor of this baseline on this split read from")
                       for message in caplog.messages)  # fmt: skip
            assert read == (attempt == "again")
    data = tiny_datamodule(pet_root)
    data.setup()
    n = len(data.files["test"])
    batch = read_checkpoint(trained["vq"])["datamodule_hyper_parameters"]["batch_size"]
    # building an entry runs the first batch of each shape whole once more, to check it agrees
    checked = sum({size for start in range(0, n, batch) if (size := min(batch, n - start)) > 1})
    assert passes == {("cached", "first"): n + checked, ("cached", "again"): 0, ("live", "first"): n}
    for name in ("scores_test.csv", "best_results_test.png", "worst_results_test.png", "codes_best_test.png"):
        assert len({(tmp_path / place / attempt / name).read_bytes() for place, attempt in passes}) == 1
    summaries = []
    for place, attempt in passes:
        summary = json.loads((tmp_path / place / attempt / "summary_test.json").read_text())
        del summary["baseline_checkpoint"], summary["vq_checkpoint"]
        summaries.append(summary)
    assert summaries[0] == summaries[1] == summaries[2]
    assert summaries[0]["task_floor"]["mask_context"]["bytes_mean"] > 0


class KeptPassRuns:
    """Copies of the trained runs whose cache folder is ``tmp_path/cache``, compared without ranked
    images (so a kept baseline's head runs on none), counting each head's calls."""

    SAID = {
        "floor": "task floor of this baseline on this split read from",
        "scores": "the baseline's scores on this split read from there too",
    }

    def __init__(self, trained, pet_root, tmp_path, caplog):
        self.pet_root, self.tmp_path, self.caplog = pet_root, tmp_path, caplog
        self.runs = {
            kind: shutil.copytree(trained[kind].parent, tmp_path / kind) / "last.ckpt"
            for kind in ("baseline", "vq")
        }
        config_file = self.runs["vq"].parent / "config.json"
        config = json.loads(config_file.read_text())
        config["training"]["cache_dir"] = str((tmp_path / "cache").resolve())
        (tmp_path / "cache").mkdir()
        config_file.write_text(json.dumps(config))
        self.head_type = type(load_module(trained["baseline"], "baseline").backbone.head)

    def compare(self, output: str, *extra, runs=None) -> tuple[set, list[int]]:
        """What the comparison read of a kept pass ('floor', 'scores') and how often each head ran."""
        calls = {}

        def count(module, inputs, result):
            if type(module) is self.head_type:
                calls[id(module)] = calls.get(id(module), 0) + 1

        self.caplog.clear()
        hook = torch.nn.modules.module.register_module_forward_hook(count)
        try:
            with self.caplog.at_level(logging.INFO):
                arguments = visualize_args(runs or self.runs, self.pet_root, self.tmp_path / output,
                                           "--n_best", 0, "--n_worst", 0, *extra)  # fmt: skip
                assert run_cli(*arguments) == 0
        finally:
            hook.remove()
        messages = self.caplog.messages
        read = {what for what, start in self.SAID.items() if any(m.startswith(start) for m in messages)}
        return read, sorted(calls.values())

    def outputs(self, output: str) -> tuple[bytes, dict]:
        summary = json.loads((self.tmp_path / output / "summary_test.json").read_text())
        return (self.tmp_path / output / "scores_test.csv").read_bytes(), summary

    def kept(self) -> list[Path]:
        return list((self.tmp_path / "cache").glob("*.baselines/*.npz"))


def test_a_baselines_pass_is_kept_and_read_for_the_metrics_it_was_kept_for(
    trained, pet_root, tmp_path, caplog, monkeypatch
):
    """The baseline's pass over a cached split (task floor, per-image statistics) is kept beside the
    cache entry; the next comparison against it runs only the squeezed model's head and writes the same
    bytes, for the kept metrics or fewer. Statistics of a metric of one's own are always measured (its
    code may change under the same name)."""
    runs = KeptPassRuns(trained, pet_root, tmp_path, caplog)
    assert runs.compare("first")[0] == set() and len(runs.kept()) == 1
    n = runs.outputs("first")[0].count(b"\n") - 1  # test images, each seen once by a model's head
    read, heads = runs.compare("again")
    assert read == {"floor", "scores"} and heads == [n] and runs.outputs("again") == runs.outputs("first")
    assert runs.compare("iou_only", "--metrics")[0] == {"floor", "scores"}  # a subset of the kept ones

    class LooseBoundary(BoundaryF):  # a metric of one's own
        name, title, statistics_key = "loose_boundary", "boundary F within 4 pixels", "loose_boundary"

        def __init__(self):
            super().__init__(tolerance=4)

    monkeypatch.setitem(METRICS.entries, LooseBoundary.name, LooseBoundary)  # removed after the test
    assert runs.compare("own", "--metrics", "loose_boundary") == ({"floor"}, [n, n])
    assert runs.compare("after_own")[0] == {"floor", "scores"}


def test_a_damaged_or_unkeepable_pass_is_measured_again_and_another_baseline_gets_its_own(
    trained, pet_root, tmp_path, caplog
):
    """A kept file that is not an archive, cut short or empty is said and measured again (and replaced);
    a baseline with a moved weight gets a file of its own; where nothing can be kept, that is said and
    the comparison's outputs are written all the same."""
    runs = KeptPassRuns(trained, pet_root, tmp_path, caplog)
    runs.compare("first")
    (kept,) = runs.kept()
    whole = kept.read_bytes()
    for attempt, damage in enumerate((b"not an npz", whole[: len(whole) // 2], b"")):
        kept.write_bytes(damage)
        read, output = runs.compare(f"damaged{attempt}")[0], runs.outputs(f"damaged{attempt}")
        assert read == set() and output == runs.outputs("first")
        assert "unreadable or incomplete; measuring it again" in caplog.text
        assert runs.compare(f"replaced{attempt}")[0] == {"floor", "scores"}
    other = torch.load(runs.runs["baseline"], weights_only=True)
    name = next(key for key in other["state_dict"] if key.endswith("weight"))
    other["state_dict"][name] = other["state_dict"][name] + 0.5
    torch.save(other, tmp_path / "baseline" / "moved.ckpt")
    moved = {**runs.runs, "baseline": tmp_path / "baseline" / "moved.ckpt"}
    assert runs.compare("moved", runs=moved)[0] == set()
    assert len(runs.kept()) == 2
    shutil.rmtree(kept.parent)
    kept.parent.write_text("not a folder")  # nowhere to keep it: said, and the comparison's outputs written
    assert runs.compare("unkept")[0] == set() and runs.outputs("unkept") == runs.outputs("first")
    assert "baseline pass not kept in" in caplog.text


def test_every_warning_is_shown_whole_under_the_figure_title(tmp_path):
    """Two warnings once ran on as one title line wider than the figure, the unpaired one cut off at its
    start; each now starts a line of its own, wrapped inside the figure and clear of the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    from embeddings_squeeze.data.voc import VOC_CLASSES
    from embeddings_squeeze.utils.comparison import ScoredImage
    from embeddings_squeeze.utils.figures import plot_results, wrapped_warnings

    warnings = (
        "warning: not paired by training: the models were trained on different data or splits (the image ids "
        "in their split.json (baseline and VQ))",
        "warning: the baseline stopped at its cap of 50 epochs before its validation loss flattened, so "
        "differences against it may be understated; raise --baseline_epochs",
    )
    labels = np.zeros((40, 60), dtype=np.int64)
    item = ScoredImage(0, "cat_1", 0.5, 0.4, np.zeros((40, 60, 3), np.uint8), labels, labels, labels)
    figure = plot_results(
        [item], VOC_CLASSES, "1 best VQ results on the test split", tmp_path / "f.png", warnings
    )
    lines = wrapped_warnings(warnings)
    assert len(lines) > len(warnings) and sum(line.startswith("warning: ") for line in lines) == 2
    assert " ".join(lines) == " ".join(warnings)  # each from a line of its own, nothing lost in the wrapping
    renderer = FigureCanvasAgg(figure).get_renderer()  # the backend savefig drew the PNG with
    (title,) = [text for text in figure.findobj(Text) if text.get_text().startswith("1 best VQ results")]
    box, whole = title.get_window_extent(renderer), figure.bbox
    assert whole.x0 <= box.x0 and box.x1 <= whole.x1 and box.y1 <= whole.y1  # inside the figure
    assert figure.legends[0].get_window_extent(renderer).y1 <= box.y0  # the legend below the title
    assert Image.open(tmp_path / "f.png").size == figure_size_pixels(1, len(VOC_CLASSES), len(lines))
