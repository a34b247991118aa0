import csv
import json
import logging

import pytest
from conftest import TINY, parse

from embeddings_squeeze import sweep
from embeddings_squeeze.utils.input_compression import codecs


@pytest.fixture(scope="module")
def finished_sweep(pet_root, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("sweep")
    argv = [*TINY, "--data_path", pet_root, "--output_dir", output_dir, "--epochs", 1,
            "--quantizer_type", "vq", "fsq", "--num_vectors", 8, "--jpeg_qualities", 10, 90]  # fmt: skip
    rows = sweep.main(parse(sweep, *argv))
    return output_dir, rows, argv


def test_tables_hold_every_model(finished_sweep):
    output_dir, rows, _ = finished_sweep
    names = [row["name"] for row in rows]
    expected_vq = {"vq_K8_seed42", "fsq_K8_seed42"}
    assert names[0] == "baseline" and expected_vq <= set(names)
    assert len([r for r in rows if r["kind"] == "input"]) == 2 * len(codecs())
    with open(output_dir / "sweep.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [row["name"] for row in table] == names
    stored = json.loads((output_dir / "sweep.json").read_text())
    assert [row["name"] for row in stored["rows"]] == names
    # with --weights none one random backbone is drawn, saved and shared by every model
    assert (output_dir / "random_vit_64px_seed42.pth").is_file()
    assert not any(
        "different frozen weights" in line for line in (output_dir / "report.html").read_text().splitlines()
    )
    baseline = rows[0]
    assert baseline["delta_miou"] == 0.0
    for row in rows:
        assert 0.0 <= row["miou"] <= 1.0
        assert row["delta_miou"] == pytest.approx(row["miou"] - baseline["miou"])
        if row["kind"] == "vq":
            assert row["payload_bytes_per_image"] > 0 and row["fixed_bits_per_image"] > 0
            assert {"iou_pet", "iou_background", "iou_border", "training_seconds"} <= set(row)
            assert 0 < row["code_usage"] <= 1


def test_image_bytes_grow_with_quality(finished_sweep):
    _, rows, _ = finished_sweep
    for codec in codecs():
        sizes = {r["quality"]: r["payload_bytes_per_image"] for r in rows if r.get("codec") == codec}
        assert sizes[90] > sizes[10]


def test_plot_and_report_reference_every_figure(finished_sweep):
    output_dir, _, _ = finished_sweep
    assert (output_dir / "rate_quality.png").stat().st_size > 0
    report = (output_dir / "report.html").read_text()
    figures = ["rate_quality.png", "best_results_test.png", "worst_results_test.png"]
    assert all(f'alt="{name}"' in report for name in figures)
    assert report.count("data:image/png;base64,") == 4  # plot, best, worst, worst by loss to baseline
    assert "fsq_K8_seed42" in report and "JPEG" in report


def test_rerun_skips_finished_work(finished_sweep, caplog):
    caplog.set_level(logging.INFO)
    output_dir, rows, argv = finished_sweep
    before = {p.name: p.stat().st_mtime_ns for p in (output_dir / "results").iterdir()}
    again = sweep.main(parse(sweep, *argv))
    assert [r["name"] for r in again] == [r["name"] for r in rows]
    assert {p.name: p.stat().st_mtime_ns for p in (output_dir / "results").iterdir()} == before
    assert "skipping vq_K8_seed42" in caplog.text
    assert len(list((output_dir / "runs").iterdir())) == 3  # baseline + 2 VQ runs, none retrained
