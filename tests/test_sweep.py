import csv
import io
import json
import logging
import re

import pytest
import torch
from helpers import (
    TINY,
    baseline_module,
    one_line_error,
    parse,
    run_cli,
    tiny_datamodule,
    torchmetrics_miou,
    visualize_summary,
)
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze import sweep
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.utils.figures import figure_size_pixels
from embeddings_squeeze.utils.input_compression import codecs
from embeddings_squeeze.utils.rate_quality import bd_rate

SEEDS = (42, 43)


@pytest.fixture(scope="module")
def finished_sweep(pet_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("sweep")
    argv = [*TINY, "--data_path", pet_root, "--output_dir", output_dir, "--epochs", 1, "--seeds", 2,
            "--baseline_epochs", 3, "--subset_size", 4, "--quantizer_type", "vq", "fsq", "eb",
            "--num_vectors", 8, "--lambdas", 0.5, "--jpeg_qualities", 10, 90]  # fmt: skip
    rows = sweep.main(parse(sweep, *argv))
    return output_dir, rows, argv


def test_tables_hold_every_model(finished_sweep):
    output_dir, rows, _ = finished_sweep
    names = [row["name"] for row in rows]
    # the continuous references first: VQ's and eb's (the projections), FSQ's (its code modules too)
    assert names[:6] == ["baseline_seed42", "baseline_seed43", "none_D64_seed42", "none_D64_seed43",
                         "none_fsq1_D64_seed42", "none_fsq1_D64_seed43"]  # fmt: skip
    assert len(set(names)) == len(names)
    assert {f"{q}_K8_seed{s}" for q in ("vq", "fsq") for s in SEEDS} <= set(names)
    assert {f"eb_lambda0.5_seed{s}" for s in SEEDS} <= set(names)
    assert len([r for r in rows if r["kind"] == "input"]) == 2 * len(codecs()) * len(SEEDS)  # per seed
    with open(output_dir / "sweep.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["name"] for row in table][: len(names)] == names
    stored = json.loads((output_dir / "sweep.json").read_text())
    assert [row["name"] for row in stored["rows"]] == names
    means = {a["name"] for a in stored["aggregates"]}
    assert {"vq_K8_mean", "fsq_K8_mean", "eb_lambda0.5_mean", "none_D64_mean", "baseline_mean",
            "jpeg_q10_mean", "mask_png_mean", "grid_oracle_7_mean"} <= means  # fmt: skip
    # with --weights none every model, whatever its seed, runs on the one random backbone of --backbone_seed
    checkpoints = list((output_dir / "runs").glob("*/version_0/last.ckpt"))
    assert len(checkpoints) == 12  # per seed: a baseline, two continuous references, three squeezed models
    assert len({read_checkpoint(path)["hyper_parameters"]["weights_id"] for path in checkpoints}) == 1
    for row in rows:
        if row["kind"] == "floor_gt":  # sizes only: the ground truth is not scored against itself
            assert "miou" not in row
            continue
        assert (
            row["miou_low"] <= row["miou"] <= row["miou_high"]
            if row["miou_low"] is not None
            else row["interval_note"]
        )
        if row["kind"] == "squeezed" and row["quantizer"] == "eb":
            assert row["setting"] == "rate_lambda" and row["value"] == 0.5 and row["alphabet_size"] is None
            assert (
                row["payload_bytes_per_image"] > row["header_bytes"] == 10 and row["coded_bits_per_image"] > 0
            )
        elif row["kind"] == "squeezed" and row["quantizer"] == "none":
            # a continuous reference sends its code at 4 x 4 positions as float16, after the header: the
            # 64 latent channels, or FSQ's one code channel (K=8: one level of 8)
            channels = 1 if "fsq" in row["name"] else 64
            assert row["payload_bytes_per_image"] == 10 + channels * 16 * 2 and row["setting"] is None
        elif row["kind"] == "squeezed":
            assert row["setting"] == "num_vectors" and row["value"] == 8
            assert row["alphabet_size"] == 8  # FSQ: one level of 8
            assert row["coded_bits_per_image"] >= row["entropy_bits_per_image"]  # on a split this small
            assert {"iou_pet", "iou_background", "iou_border", "training_seconds"} <= set(row)
            low, high = row["delta_miou_vs_reference_low"], row["delta_miou_vs_reference_high"]
            assert low <= row["delta_miou_vs_reference"] <= high if low is not None else row["interval_note"]


@torch.no_grad()
def test_code_usage_is_the_share_of_codes_the_test_images_send(finished_sweep, pet_root):
    _, rows, _ = finished_sweep
    data = tiny_datamodule(pet_root, subset_size=4)  # the sweep's split and images
    data.setup()
    files = data.files["test"]
    for row in rows:
        if row["kind"] != "squeezed" or row["alphabet_size"] is None:
            continue
        module = load_module(row["checkpoint"], "squeezed").eval()
        sent = torch.cat([module.encode_image(files[i][0])[1].reshape(-1) for i in range(len(files))])
        assert row["code_usage"] == pytest.approx(sent.unique().numel() / row["alphabet_size"]), row["name"]


def test_pets_intervals_are_stated_and_hold_their_estimates(finished_sweep):
    _, rows, _ = finished_sweep
    # every pet class is in every test image: intervals are stated (about a few rows: no spread)
    stated = [row for row in rows if row.get("miou_low") is not None]
    assert len(stated) >= len(rows) // 2
    for row in stated:
        assert row["miou_low"] <= row["miou"] <= row["miou_high"]


def test_scores_agree_with_torchmetrics_on_what_the_receiver_decodes(finished_sweep, pet_root):
    _, rows, _ = finished_sweep
    by_name = {row["name"]: row for row in rows}
    data = tiny_datamodule(pet_root, subset_size=4)  # the sweep's split and images
    data.setup()
    checked = {"baseline_seed43": "baseline", "vq_K8_seed42": "squeezed", "eb_lambda0.5_seed43": "squeezed",
               "none_D64_seed42": "squeezed"}  # fmt: skip
    for name, kind in checked.items():
        module = load_module(by_name[name]["checkpoint"], kind)
        assert by_name[name]["miou"] == pytest.approx(torchmetrics_miou(module, data), abs=1e-6), name


def test_every_comparison_pairs_a_row_with_its_own_seeds_baseline(finished_sweep):
    output_dir, rows, _ = finished_sweep
    splits = {path.read_text() for path in (output_dir / "runs").glob("*/version_0/split.json")}
    assert len(list((output_dir / "runs").glob("*/version_0/split.json"))) == 12 and len(splits) == 1
    by_name = {row["name"]: row for row in rows}
    baselines = {row["seed"]: row["miou"] for row in rows if row["kind"] == "baseline"}
    own_reference = {"vq": "none_D64", "eb": "none_D64", "fsq": "none_fsq1_D64"}  # each type's modules
    for row in rows:
        if row["kind"] in ("squeezed", "input"):
            assert row["baseline_miou"] == baselines[row["seed"]]
            assert row["delta_miou"] == pytest.approx(row["miou"] - baselines[row["seed"]])
            if row["delta_miou_low"] is not None:  # else interval_note says why none is stated
                assert row["delta_miou_low"] <= row["delta_miou"] <= row["delta_miou_high"]
        if row["kind"] == "squeezed" and row["quantizer"] != "none":
            reference = by_name[f"{own_reference[row['quantizer']]}_seed{row['seed']}"]
            assert row["delta_miou_vs_reference"] == pytest.approx(row["miou"] - reference["miou"])


def test_differences_from_the_reference_match_one_comparison_of_all_three(finished_sweep, pet_root, tmp_path):
    # the sweep pairs a model with its reference from stored per-image counts; visualize scores all
    # three models in one pass: the same difference and the same paired interval
    _, rows, _ = finished_sweep
    by_name = {row["name"]: row for row in rows}
    row = by_name["fsq_K8_seed43"]
    summary = visualize_summary(
        by_name["baseline_seed43"]["checkpoint"], row["checkpoint"], pet_root, tmp_path,
        "--reference_checkpoint", by_name["none_fsq1_D64_seed43"]["checkpoint"],
    )  # fmt: skip
    assert summary["miou_difference_vs_reference"] == pytest.approx(row["delta_miou_vs_reference"])
    bounds = [row["delta_miou_vs_reference_low"], row["delta_miou_vs_reference_high"]]
    assert summary["miou_difference_vs_reference_ci"] == pytest.approx(bounds)


def test_a_models_page_pairs_each_image_with_its_baselines_own_score(finished_sweep, pet_root, tmp_path):
    """A sweep's comparisons read the per-image statistics its baseline jobs saved: each image's
    baseline IoU on a model's page is the one visualize measures for that image."""
    by_name = {row["name"]: row for row in finished_sweep[1]}
    assert len(list((finished_sweep[0] / "results").glob("baseline_seed*_input_statistics.pt"))) == 2
    page = next((finished_sweep[0] / "figures").glob("*/index.html"))
    row = by_name[page.parent.name]
    visualize_summary(
        by_name[f"baseline_seed{row['seed']}"]["checkpoint"], row["checkpoint"], pet_root, tmp_path
    )
    lines = csv.DictReader((tmp_path / "scores_test.csv").read_text().splitlines())
    measured = {line["image_id"]: float(line["baseline_iou"]) for line in lines}
    table = re.findall(r"<tr><td>\d+</td><td>([^<]+)</td><td>([^<]+)</td>", page.read_text())
    shown = {image: float(value) for image, value in table}  # to 4 significant digits
    assert len(shown) == len(measured) > 1 and shown == pytest.approx(measured, rel=5e-4)


def test_task_floor_and_oracle_rows_per_seed(finished_sweep):
    output_dir, rows, _ = finished_sweep
    by_name = {row["name"]: row for row in rows}
    for seed in SEEDS:
        baseline = by_name[f"baseline_seed{seed}"]
        for coder in ("png", "webp", "context"):
            floor = by_name[f"mask_{coder}_seed{seed}"]
            assert floor["kind"] == "floor" and floor["payload_bytes_per_image"] > floor["header_bytes"]
            # the same masks the baseline is scored on, so exactly its mIoU and interval
            assert (floor["miou"], floor["miou_low"]) == (baseline["miou"], baseline["miou_low"])
            assert by_name[f"gt_mask_{coder}_seed{seed}"]["kind"] == "floor_gt"
        oracles = [by_name[f"grid_oracle_{cells}_seed{seed}"] for cells in (7, 14, 28, 56)]
        assert all(row["kind"] == "oracle" for row in oracles)
        assert all(row["delta_miou"] == pytest.approx(row["miou"] - baseline["miou"]) for row in oracles)
        assert [row["payload_bytes_per_image"] for row in oracles] == sorted(
            row["payload_bytes_per_image"] for row in oracles
        )  # finer grids cost more
    stored = json.loads((output_dir / "sweep.json").read_text())
    methods = {entry["name"]: entry for entry in stored["rate_at_quality"]}
    for seed in SEEDS:  # the baseline's own lossless mask always reaches 90 % of that seed's baseline
        entry = methods[f"mask_png_front_seed{seed}"]
        assert entry["bytes_at_90"] == by_name[f"mask_png_seed{seed}"]["payload_bytes_per_image"]
        assert entry["bytes_at_90_upper_bound"]  # its one point already passes: an upper bound


def majority_grid(target: torch.Tensor, cells: int, classes: int) -> torch.Tensor:
    """The grid oracle from its definition, by loops: cell (r, c) holds the pixels (i, j) with
    i * cells // H == r and j * cells // W == c and takes their commonest label (the smallest on a tie;
    the image's commonest where the cell has no labelled pixel); each pixel then shows its cell's label."""
    height, width = target.shape
    votes = [[[0] * classes for _ in range(cells)] for _ in range(cells)]
    for i in range(height):
        for j in range(width):
            label = int(target[i, j])
            if label != IGNORE_INDEX:
                votes[i * cells // height][j * cells // width][label] += 1
    totals = [sum(votes[r][c][k] for r in range(cells) for c in range(cells)) for k in range(classes)]
    fallback = totals.index(max(totals))
    grid = [[v.index(max(v)) if sum(v) else fallback for v in row] for row in votes]
    return torch.tensor([[grid[i * cells // height][j * cells // width] for j in range(width)]
                         for i in range(height)])  # fmt: skip


def test_grid_oracles_score_as_the_majority_grid_by_torchmetrics(finished_sweep, pet_root):
    _, rows, _ = finished_sweep
    by_name = {row["name"]: row for row in rows}
    data = tiny_datamodule(pet_root, subset_size=4)
    data.setup()
    files = data.files["test"]
    targets = [files.load(i, files.transform.native_labels) for i in range(len(files))]
    for cells in (7, 56):
        metric = MulticlassJaccardIndex(3, ignore_index=IGNORE_INDEX)
        for target in targets:
            metric.update(majority_grid(target, cells, 3)[None], target[None])
        for seed in SEEDS:  # the oracle depends on the ground truth alone
            assert by_name[f"grid_oracle_{cells}_seed{seed}"]["miou"] == pytest.approx(
                metric.compute().item()
            )


def test_rate_at_quality_for_every_method_and_seed(finished_sweep):
    output_dir, rows, _ = finished_sweep
    stored = json.loads((output_dir / "sweep.json").read_text())
    methods = {entry["name"]: entry for entry in stored["rate_at_quality"]}
    kinds = ("vq", "fsq", "eb", "none_D64", "none_fsq1_D64", "JPEG", "mask_png", "grid_oracle_7")
    for seed in SEEDS:
        assert {f"{m}_front_seed{seed}" for m in kinds} <= set(methods)
    assert {"vq_front_mean", "JPEG_front_mean"} <= set(methods)
    jpeg = [methods[f"JPEG_front_seed{seed}"]["bytes_at_90"] for seed in SEEDS]
    mean = methods["JPEG_front_mean"]
    reached = sum(value is not None for value in jpeg)
    assert mean["bytes_at_90_seeds"] == f"{reached} of 2"  # a mean only where every seed reaches it
    assert mean["bytes_at_90"] == (pytest.approx(sum(jpeg) / 2) if reached == 2 else None)
    # the BD-rate (tested by hand in test_rate_quality.py) of exactly this seed's WebP and JPEG points,
    # two each (q10, q90); on 4 test images their intervals are wider than the fronts' overlap, so the
    # entry is that reason (test_rate_quality.py follows sweep rows to a number)
    curves = {"JPEG": [], "WEBP": []}
    widest = {"JPEG": 0.0, "WEBP": 0.0}
    for row in rows:
        if row["kind"] == "input" and row["seed"] == 42:
            curves[row["codec"]].append((row["payload_bytes_per_image"], row["miou"]))
            low, high = row["delta_miou_low"], row["delta_miou_high"]
            widths = (widest[row["codec"]], None if low is None else high - low)
            widest[row["codec"]] = None if None in widths else max(widths)
    resolution = None if None in widest.values() else max(widest.values())
    expected = bd_rate(curves["WEBP"], curves["JPEG"], resolution)
    assert expected.startswith("n/a: overlap") and "95 % intervals" in expected
    assert methods["WEBP_front_seed42"]["bd_rate_vs_jpeg"] == expected
    # one sentence per configuration with its seeds combined, then the rule of the intervals
    *configurations, last = stored["sentences"]
    warned = [line for line in configurations if line.startswith("warning: baseline_seed")]
    assert len(configurations) - len(warned) == 5 and configurations[0].startswith("none_D64: ")
    unconverged = [row for row in rows if row["kind"] == "baseline" and not row["converged"]]
    assert len(warned) == len(unconverged)  # a capped baseline (--baseline_epochs 3) is named as such
    assert last.startswith("Intervals: 95 %")
    with open(output_dir / "sweep.csv") as handle:
        kinds = [row["kind"] for row in csv.DictReader(handle)]
    assert kinds.count("method") + kinds.count("method_mean") == len(methods)


def test_image_bytes_are_pillows_own_optimised_files(finished_sweep, pet_root):
    _, rows, _ = finished_sweep
    data = tiny_datamodule(pet_root, subset_size=4)
    data.setup()
    files, side = data.files["test"], data.hparams.image_size
    sizes = []
    for position in range(len(files)):
        image = Image.fromarray(files.native_image(position))
        if image.width * image.height > side * side:  # coded at the smaller of its own and the input size
            image = image.resize((side, side), Image.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=10, optimize=True)
        sizes.append(buffer.tell())
    jpeg = {r["quality"]: r for r in rows if r.get("codec") == "JPEG" and r["seed"] == 42}
    assert jpeg[10]["payload_bytes_per_image"] == pytest.approx(sum(sizes) / len(sizes))
    for codec in codecs():
        sizes = {r["quality"]: r["payload_bytes_per_image"] for r in rows if r.get("codec") == codec}
        assert sizes[90] > sizes[10]


def test_figures_show_the_images_the_table_scores(finished_sweep):
    output_dir, rows, _ = finished_sweep
    scored = {row["name"]: row for row in rows}["vq_K8_seed42"]
    assert scored["payload_bytes_per_image"] > 0
    # --subset_size 4: the table scores 4 test images, and the figures draw from those same 4
    for name in ("iou/best_results_test.png", "iou/worst_results_test.png", "delta/worst_results_test.png"):
        with Image.open(output_dir / "figures" / "vq_K8_seed42" / name) as figure:
            assert figure.size == figure_size_pixels(4)


def test_plot_and_report_reference_every_figure(finished_sweep):
    output_dir, _, _ = finished_sweep
    assert (output_dir / "rate_quality.png").stat().st_size > 0
    report = (output_dir / "report.html").read_text()
    figures = ["rate_quality.png", "best_results_test.png", "worst_results_test.png"]
    assert all(f'alt="{name}"' in report for name in figures)
    assert report.count("data:image/png;base64,") == 4  # plot, best, worst, worst by loss to baseline
    assert "fsq_K8_seed42" in report and "JPEG" in report
    # the settings as the sweep was given them: its own folder (not the runs' inside it), lists as typed
    assert f"<td>output_dir</td><td>{output_dir}</td>" in report
    assert (
        "<td>jpeg_qualities</td><td>10 90</td>" in report
        and "<td>quantizer_type</td><td>vq fsq eb</td>" in report
    )


def test_rerun_skips_finished_work(finished_sweep, caplog):
    caplog.set_level(logging.INFO)
    output_dir, rows, argv = finished_sweep
    outputs = [*(output_dir / "results").iterdir(), *(output_dir / "figures").rglob("*.png")]
    before = {path: path.stat().st_mtime_ns for path in outputs}
    again = sweep.main(parse(sweep, *argv))
    assert [r["name"] for r in again] == [r["name"] for r in rows]
    # no result rewritten and no figure redrawn: nothing was trained or scored again
    assert {path: path.stat().st_mtime_ns for path in outputs} == before
    assert "job(s) finished earlier: " in caplog.text and "vq_K8_seed42" in caplog.text
    runs = [path for path in (output_dir / "runs").iterdir() if path.name != ".feature_cache"]
    assert len(runs) == 12  # per seed: 6 runs, none retrained


def test_a_baseline_is_kept_when_the_sweep_stops_after_it(pet_root, tmp_path, capsys):
    argv = [*TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 1, "--subset_size", 4,
            "--quantizer_type", "lfq", "--jpeg_qualities", 50]  # fmt: skip
    assert run_cli("sweep", *argv, "--num_vectors", 12) == 2  # LFQ refuses K=12, after the baseline
    assert "power of two" in one_line_error(capsys)
    result = tmp_path / "results" / "baseline_seed42.json"
    scored = json.loads(result.read_text())
    assert run_cli("sweep", *argv, "--num_vectors", 8) == 0
    assert json.loads(result.read_text()) == scored  # scored once, as soon as it trained
    result.unlink()  # as if the sweep had stopped between training the baseline and scoring it
    assert run_cli("sweep", *argv, "--num_vectors", 8) == 0
    assert [p.name for p in (tmp_path / "runs" / "baseline_seed42").iterdir()] == ["version_0"]  # reused
    assert json.loads(result.read_text())["miou"] == scored["miou"]


def test_a_sweep_runs_the_backbone_once_per_image_per_split(pet_root, tmp_path, caplog):
    """Whatever the number of squeezed models, the frozen encoder sees each image of the train, val and
    test splits once (the feature cache serves training, the rate tables and every score), and each
    test image once more per codec anchor (its restored copy)."""
    patch_embedding = type(baseline_module().backbone.encoder.patch_embed)  # runs once per image
    images = []

    def count(module, inputs, output):
        if type(module) is patch_embedding:  # not the grid-size probe (a zero image), images only
            images.append(int((inputs[0].flatten(1) != 0).any(dim=1).sum()))

    seen = {}
    hook = torch.nn.modules.module.register_module_forward_hook(count)
    try:
        for quantizers in (["vq"], ["vq", "fsq", "lfq"]):
            images.clear()
            # batches of one: the cache's first batch of a shape is also run whole, to check it agrees
            argv = [*TINY, "--batch_size", 1, "--data_path", pet_root, "--epochs", 2, "--baseline_epochs", 2,
                    "--output_dir", tmp_path / str(len(quantizers)), "--subset_size", 4,
                    "--quantizer_type", *quantizers, "--num_vectors", 8, "--jpeg_qualities", 50]  # fmt: skip
            caplog.clear()
            with caplog.at_level(logging.INFO):
                sweep.main(parse(sweep, *argv))
            seen[len(quantizers)] = sum(images)
            said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("job ")]
            assert said[0] == f"job 1 of {len(said)}: features (features)"  # each job by name, as it starts
            # and the time left, for the jobs of kinds already timed; the others counted
            squeezed = [line for line in said if line.endswith("(squeezed)") or "(squeezed);" in line]
            inputs = [line for line in said if "(input)" in line]
            assert "left" not in said[1] and "left" not in squeezed[0] and "left" not in inputs[0]
            for line in squeezed[1:]:
                assert line.endswith(
                    f"left at the pace so far, and {len(codecs())} job(s) of kinds not timed yet"
                )
            assert all(line.endswith("left at the pace so far") for line in inputs[1:])
            assert [line.split(":")[0] for line in said] == [
                f"job {i} of {len(said)}" for i in range(1, len(said) + 1)
            ]
    finally:
        hook.remove()
    data = tiny_datamodule(pet_root, subset_size=4)
    data.setup()
    sizes = {name: len(split) for name, split in data.files.items()}
    once = sizes["train"] + sizes["val"] + sizes["test"] + len(codecs()) * sizes["test"]
    assert seen == {1: once, 3: once}
