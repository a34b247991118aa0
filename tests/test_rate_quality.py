"""Rate at equal quality and BD-rate, against answers known by construction."""

import math

import pytest

from embeddings_squeeze.utils.rate_quality import (
    FEW_POINTS,
    NO_OVERLAP,
    THIN_OVERLAP,
    bd_rate,
    bytes_at,
    method_summaries,
    overlap,
    pareto_front,
    standing,
)
from embeddings_squeeze.utils.sweep_report import rate_at_quality

ANCHOR = [(100.0, 0.50), (200.0, 0.60), (400.0, 0.66), (800.0, 0.70)]


def test_half_the_rate_everywhere_is_minus_50_percent():
    half = [(size / 2, miou) for size, miou in ANCHOR]
    assert bd_rate(half, ANCHOR) == pytest.approx(-50.0)
    assert bd_rate(ANCHOR, half) == pytest.approx(100.0)
    assert bd_rate(ANCHOR, ANCHOR) == pytest.approx(0.0)


def test_bd_rate_of_linear_log_rate_curves_by_hand():
    # log-rate linear in mIoU: ln r = a + b q. PCHIP reproduces collinear points exactly, and the mean
    # difference of two lines over the shared range [0.45, 0.6] is their difference at its midpoint.
    anchor = [(math.exp(2 + 10 * q), q) for q in (0.4, 0.5, 0.6)]
    test = [(math.exp(1 + 12 * q), q) for q in (0.45, 0.55, 0.65)]
    low, high = 0.45, 0.6
    midpoint = (low + high) / 2
    expected = (math.exp((1 + 12 * midpoint) - (2 + 10 * midpoint)) - 1) * 100
    assert bd_rate(test, anchor) == pytest.approx(expected, rel=1e-9)


def test_bd_rate_without_overlap_with_one_point_or_too_thin_an_overlap():
    assert bd_rate([(10.0, 0.8), (20.0, 0.9)], ANCHOR) == NO_OVERLAP
    assert bd_rate([(10.0, 0.6)], ANCHOR) == "n/a: fewer than two points on its front (1 of 1 point)"
    points = [(10.0, 0.6), (10.0, 0.5), (10.0, 0.6), (20.0, 0.6), (40.0, 0.55), (0.0, 0.7)]
    names = {(20.0, 0.6): "vq_K64_seed42", (40.0, 0.55): "vq_K256_seed42"}
    assert bd_rate(points, ANCHOR, names=names) == (
        "n/a: fewer than two points on its front (1 of 6 points); left out, as an equally cheap or cheaper "
        "point scores as high or higher: 10.0 B at mIoU 0.5000, 10.0 B at mIoU 0.6000, vq_K64_seed42 "
        "(20.0 B at mIoU 0.6000), vq_K256_seed42 (40.0 B at mIoU 0.5500); 1 without measured bytes or mIoU"
    )
    assert bd_rate(ANCHOR, [(10.0, 0.6)]).startswith("n/a: fewer than two points on the anchor's front")
    # overlap [0.69, 0.70] of a front spanning [0.69, 0.9]: a hundredth of the anchor's 0.2, under half
    assert bd_rate([(10.0, 0.69), (20.0, 0.9)], ANCHOR) == THIN_OVERLAP
    assert overlap([(10.0, 0.69), (20.0, 0.9)], ANCHOR) == pytest.approx([0.69, 0.70])


def test_dominated_points_leave_the_front_and_the_bd_rate():
    points = [(50.0, 0.40), (90.0, 0.57), (120.0, 0.62), (300.0, 0.61), (300.0, 0.50)]
    assert pareto_front(points) == [(50.0, 0.40), (90.0, 0.57), (120.0, 0.62)]
    half = [(size / 2, miou) for size, miou in ANCHOR]
    with_dominated = [*half, (500.0, 0.55)]  # dearer and worse than a front point: says nothing
    assert bd_rate(with_dominated, ANCHOR) == pytest.approx(-50.0)


def test_bytes_at_interpolates_log_bytes_between_the_bracketing_front_points():
    points = [(50.0, 0.40), (90.0, 0.57), (120.0, 0.62), (300.0, 0.61)]
    # 95 % of 0.60 = 0.57: exactly the 90-byte point, reached from below (0.40 at 50 bytes)
    assert bytes_at(points, 0.60, 95) == (pytest.approx(90.0), False)
    # 99 % of 0.60 = 0.594, between (90, 0.57) and (120, 0.62): by hand, 0.48 of the way in log-bytes
    share = (0.594 - 0.57) / (0.62 - 0.57)
    expected = math.exp(math.log(90) + share * (math.log(120) - math.log(90)))
    assert bytes_at(points, 0.60, 99) == (pytest.approx(expected), False)
    assert bytes_at(points, 0.70, 99) == (None, False)
    # the cheapest point tried already passes: only an upper bound
    assert bytes_at(points, 0.30, 90) == (50.0, True)


def test_standing_where_the_fronts_share_rates():
    half = [(size / 2, miou) for size, miou in ANCHOR]
    assert standing(half, ANCHOR) == "better at every shared rate"
    assert standing(ANCHOR, half) == "worse at every shared rate"
    crossing = [(100.0, 0.40), (800.0, 0.80)]
    assert standing(crossing, ANCHOR) == "crosses the anchor"
    assert standing([(5.0, 0.3), (10.0, 0.4)], ANCHOR) == "all its points cheaper than the anchor's"


def test_method_summaries_hold_every_method():
    methods = {"vq": [(size / 2, miou) for size, miou in ANCHOR], "JPEG": ANCHOR, "mask_png": [(700.0, 0.71)]}
    summary = {entry["method"]: entry for entry in method_summaries(methods, 0.71, anchors=("JPEG", "WEBP"))}
    assert summary["vq"]["bd_rate_vs_jpeg"] == pytest.approx(-50.0)
    assert summary["vq"]["standing_vs_jpeg"] == "better at every shared rate"
    assert summary["vq"]["miou_overlap_vs_jpeg"] == pytest.approx([0.5, 0.7])
    assert "bd_rate_vs_webp" not in summary["vq"]  # no WebP rows in this sweep
    assert "bd_rate_vs_jpeg" not in summary["JPEG"]
    assert summary["mask_png"]["bytes_at_99"] == 700.0 and summary["mask_png"]["bytes_at_99_upper_bound"]
    assert summary["mask_png"]["bd_rate_vs_jpeg"].startswith(FEW_POINTS)
    # 0.95 x 0.71 = 0.6745 between (200, 0.66) and (400, 0.70) on vq's front, in log-bytes
    share = (0.6745 - 0.66) / (0.70 - 0.66)
    assert summary["vq"]["bytes_at_95"] == pytest.approx(math.exp(math.log(200) + share * math.log(2)))
    assert summary["vq"]["bytes_at_95_upper_bound"] is False


def test_a_sweeps_rows_lead_to_the_bd_rate_of_their_fronts():
    # one seed's rows as the sweep writes them: VQ at half JPEG's bytes for the same mIoU everywhere, with
    # intervals narrower than the fronts' shared range; then a second seed whose intervals are wider
    rows = [{"name": "baseline_seed1", "kind": "baseline", "seed": 1, "miou": 0.72}]
    for (size, miou), quality in zip(ANCHOR, (10, 30, 60, 90)):
        common = {"seed": 1, "miou": miou, "delta_miou_low": miou - 0.73, "delta_miou_high": miou - 0.71}
        rows.append({"name": f"jpeg_q{quality}_seed1", "kind": "input", "codec": "JPEG", "quality": quality,
                     "payload_bytes_per_image": size, **common})  # fmt: skip
        rows.append({"name": f"vq_K{quality}_seed1", "kind": "squeezed", "quantizer": "vq",
                     "setting": "num_vectors", "value": quality, "payload_bytes_per_image": size / 2,
                     **common})  # fmt: skip
    wide = [{**row, "seed": 2, "name": row["name"].replace("seed1", "seed2")} for row in rows]
    for row in wide[1:]:
        row["delta_miou_low"], row["delta_miou_high"] = -0.5, 0.5  # wider than the 0.2 both fronts share
    entries = {entry["name"]: entry for entry in rate_at_quality(rows + wide)}
    assert entries["vq_front_seed1"]["bd_rate_vs_jpeg"] == pytest.approx(-50.0)
    assert entries["vq_front_seed2"]["bd_rate_vs_jpeg"].startswith("n/a: overlap 0.2000 within")
