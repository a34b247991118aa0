"""The sweep's column schema: one definition behind the tables, the report and the README."""

from pathlib import Path

import pytest

from embeddings_squeeze.utils.columns import averaged, glossary, method_and_setting, ordered, reported
from embeddings_squeeze.utils.metrics import METRICS, Metric, register_metric


def test_readme_glossary_is_the_schema():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert glossary() in readme


def test_rows_know_their_curve_and_point():
    squeezed = {"kind": "squeezed", "quantizer": "fsq", "setting": "num_vectors", "value": 64}
    assert method_and_setting(squeezed) == ("fsq", 64)
    reference = {"kind": "squeezed", "quantizer": "none", "setting": None, "configuration": "none_fsq3_D64"}
    assert method_and_setting(reference) == ("none_fsq3_D64", None)  # a point of its own
    assert method_and_setting({"kind": "input", "codec": "JPEG", "quality": 10}) == ("JPEG", 10)
    assert method_and_setting({"kind": "floor", "configuration": "mask_png"}) == ("mask_png", None)


def test_columns_keep_the_schema_order_with_patterns_and_deviations():
    keys = ["miou_std", "iou_pet", "miou", "name", "iou_border", "bytes_at_90"]
    assert ordered(keys) == ["name", "miou", "miou_std", "iou_pet", "iou_border", "bytes_at_90"]
    assert "miou" in averaged() and "seed" not in averaged()


def test_a_key_the_schema_does_not_name_is_refused():
    with pytest.raises(ValueError, match="'delta_mIoU' is not a column"):
        ordered(["name", "delta_mIoU"])  # misspelt: it would have become a column of its own


def test_a_registered_metric_brings_its_columns(monkeypatch):
    class Share(Metric):
        name, title, statistics_key = "share", "share", "share"

    monkeypatch.setitem(METRICS.entries, "share", None)  # restored after the test
    register_metric(Share)
    assert {"share", "delta_share"} <= set(averaged()) and "share" in reported()
    assert "share_low" not in averaged()  # an interval of a mean over seeds is not the mean of intervals
    assert ordered(["degenerate", "share", "miou"]) == ["miou", "share", "degenerate"]
    assert "| `delta_share` | fraction | mean |" in glossary()


def test_the_reports_table_reads_scores_first_then_costs_then_settings():
    order = reported()
    assert order[:4] == ("name", "miou", "miou_low", "miou_high")
    assert order.index("degenerate") < order.index("payload_bytes_per_image") < order.index("kind")
    assert all(order.index(setting) > order.index("payload_bytes_per_image") for setting in ("seed", "value"))
