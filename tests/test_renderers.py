"""Every renderer of scores takes whatever a comparison or a sweep can produce: generated score tables and
per-image statistics (degenerate and identical models, absent classes, one image, ties, NaN scores, 1 to
150 classes) drive the console summary, index.html, sweep.csv/json, report.html and rate_quality.png;
none may fail, and what they show must hold (estimates inside their intervals, unique row names, every
column a schema column)."""

from __future__ import annotations

import csv
import json
import re

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embeddings_squeeze.data.labels import IGNORE_INDEX, ClassSet
from embeddings_squeeze.utils import pages
from embeddings_squeeze.utils.columns import Kind, all_columns
from embeddings_squeeze.utils.comparison import Comparison
from embeddings_squeeze.utils.iou import confusion_matrices
from embeddings_squeeze.utils.metrics import chosen, image_statistics, key_of
from embeddings_squeeze.utils.rate_plot import plot_rate_quality
from embeddings_squeeze.utils.records import ComparisonReport, image_row, score_fields
from embeddings_squeeze.utils.summary_text import console_text
from embeddings_squeeze.utils.sweep_report import (
    SweepTables,
    _percent_reached,
    rate_at_quality,
    sentences,
    write_report,
    write_tables,
)
from embeddings_squeeze.utils.sweep_statistics import adjust, seed_means, with_intervals

METRICS = chosen(["dice", "pixel_accuracy", "boundary_f"])
RENDER = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def label_maps(draw, classes: int, images: int, shape=(5, 6)) -> torch.Tensor:
    """(images, H, W) labels: a few of the classes per image (most classes absent), some ignored pixels."""
    maps = []
    for _ in range(images):
        palette = draw(st.lists(st.integers(0, classes - 1), min_size=1, max_size=3))
        cells = draw(st.lists(st.sampled_from([*palette, IGNORE_INDEX]), min_size=30, max_size=30))
        maps.append(torch.tensor(cells).view(shape))
    return torch.stack(maps)


@st.composite
def predictions(draw, target: torch.Tensor, classes: int) -> torch.Tensor:
    """A model's predictions of ``target``: perfect, one class everywhere (degenerate), or noisy."""
    kind = draw(st.sampled_from(["perfect", "one class", "noisy"]))
    if kind == "perfect":
        return target.clamp(max=classes - 1)
    if kind == "one class":
        return torch.full_like(target, draw(st.integers(0, classes - 1)))
    noise = draw(label_maps(classes, len(target)))
    keep = torch.tensor(draw(st.lists(st.booleans(), min_size=target.numel(), max_size=target.numel())))
    return torch.where(keep.view(target.shape), target.clamp(max=classes - 1), noise.clamp(max=classes - 1))


def class_set(classes: int) -> ClassSet:
    return ClassSet([f"class {i}" for i in range(classes)], [(i % 256, 0, 0) for i in range(classes)])


@st.composite
def comparisons(draw) -> tuple[ComparisonReport, list[dict], list[str]]:
    """A comparison's report as ``compare`` makes it (rate and floor numbers generated), its per-image
    rows, and the score fields."""
    classes, images = draw(st.integers(1, 150)), draw(st.integers(1, 5))
    names = ("baseline", "squeezed", "reference") if draw(st.booleans()) else ("baseline", "squeezed")
    target = draw(label_maps(classes, images))
    predicted = {name: draw(predictions(target, classes)) for name in names}
    if draw(st.booleans()):
        predicted["squeezed"] = predicted["baseline"]  # identical models
    comparison = Comparison(classes=class_set(classes), models=names, metrics=tuple(METRICS))
    rows = []
    for index in range(images):
        values = comparison.add(
            {n: image_statistics(METRICS, p[index], target[index], classes) for n, p in predicted.items()},
            {
                n: confusion_matrices(p[index][None], target[index][None], classes)[0]
                for n, p in predicted.items()
            },
        )
        rows.append(image_row(index, f"image_{index}", values))
    number = st.floats(0.5, 1e5, allow_nan=False)
    rate = {
        "coding": "16 codes per level",
        "quantizer_type": "vq",
        "positions_per_image": 49,
        "coded_bits_per_image": draw(number),
        "payload_bytes_mean": draw(number),
        "header_bytes": 10,
        "payload_bits_per_pixel": draw(number),
        "float32_bits_per_image": 150528 * 8,
        "compression_vs_float32_payload": draw(number),
    }
    floor = {f"mask_{coder}": {"bytes_mean": draw(number)} for coder in ("png", "webp", "context")}
    checkpoints = {"baseline": "b.ckpt", "squeezed": "v.ckpt"}
    report = ComparisonReport(comparison.result(), "test", checkpoints, rate, floor)
    return report, rows, score_fields(tuple(metric.name for metric in METRICS), names)


def numbers_in(text: str) -> list[float]:
    return [float(value) for value in re.findall(r"[-+]?\d+\.\d+", text)]


@RENDER
@given(comparisons())
def test_a_comparison_renders_on_the_console_and_its_page(tmp_path_factory, generated):
    report, rows, fields = generated
    summary = report.as_dict()
    for key, bounds in summary.items():
        if key.endswith("_ci") and bounds is not None:  # an interval stated holds its estimate
            assert bounds[0] <= summary[key.removesuffix("_ci")] <= bounds[1], key
    json.dumps(summary, allow_nan=True)  # the summary file's content: plain values only
    folder = tmp_path_factory.mktemp("page")
    text = console_text(report, str(folder))
    assert text.count("VQ - baseline") == len(summary["metrics"])
    page = pages.comparison_page(report, folder, [], rows, fields)
    assert page.count("<tr>") == 1 + len(summary["metrics"]) + 1 + len(rows) + 1 + 2  # heads and rows
    for line in page.split("<tr>"):  # each interval shown in the table holds the estimate shown beside it
        match = re.search(r"([-+]?\d+\.\d{4}) \[([-+]?\d+\.\d{3}), ([-+]?\d+\.\d{3})\]", line)
        if match:
            value, low, high = map(float, match.groups())
            assert low - 5e-4 <= value <= high + 5e-4


def test_the_pages_show_text_as_text(tmp_path):
    # names come from users' files and classes: markup in them is shown, never run
    names = ["<b>cat</b>", 'dog "&" co']
    classes = ClassSet(names, [(0, 0, 0), (1, 0, 0)])
    comparison = Comparison(classes=classes)
    target = torch.tensor([[0, 1], [1, 0]])
    counts = confusion_matrices(target[None], target[None], 2)[0]
    values = comparison.add({n: {"confusion": counts} for n in ("baseline", "squeezed")},
                            {n: counts for n in ("baseline", "squeezed")})  # fmt: skip
    rows = [image_row(0, "<script>alert(1)</script>", values)]
    rate = {"payload_bytes_mean": 12.0, "header_bytes": 10, "coded_bits_per_image": 9.0,
            "float32_bits_per_image": 64}  # fmt: skip
    report = ComparisonReport(
        comparison.result(), "test", {"baseline": "a<b>.ckpt", "squeezed": "v.ckpt"}, rate
    )
    page = pages.comparison_page(report, tmp_path, [], rows, score_fields(("iou",), ("baseline", "squeezed")))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&lt;b&gt;.ckpt" in page and "<b>" not in page
    tables = SweepTables([{"name": "<i>x</i>", "kind": "baseline", "miou": 0.5, "iou_<b>cat</b>": 0.5}], [],
                         [], [], ['a "quoted" & <em>sentence</em>'])  # fmt: skip
    write_report(tmp_path / "report.html", "t<i>", {"data_path": "<u>/data</u>"}, tables,
                 [(tmp_path / "missing.png", "<plot>")])  # fmt: skip
    report_page = (tmp_path / "report.html").read_text()
    for shown in (
        "&lt;i&gt;x&lt;/i&gt;",
        "&lt;em&gt;sentence&lt;/em&gt;",
        "&lt;u&gt;/data&lt;/u&gt;",
        "t&lt;i&gt;",
    ):
        assert shown in report_page
    assert not re.search(r"<(i|u|em|b)>", report_page)


@st.composite
def sweeps(draw) -> tuple[list[dict], dict]:
    """A sweep's measured rows with their per-image statistics, as the collect step reads them: per seed
    a baseline (possibly degenerate), squeezed rows of a type with a sweep axis and of a reference,
    image-codec rows, floor and oracle rows; bytes and scores generated (NaN scores included)."""
    classes, images = draw(st.integers(1, 150)), draw(st.integers(1, 4))
    seeds = list(range(42, 42 + draw(st.integers(1, 3))))
    target = draw(label_maps(classes, images))
    rows, statistics = [], {}

    def measured(name: str, kind: str, configuration: str, seed: int, **fields) -> dict:
        predicted = draw(predictions(target, classes))
        per_image = [image_statistics(METRICS, predicted[i], target[i], classes) for i in range(images)]
        statistics[name] = {key: torch.stack([p[key] for p in per_image]) for key in per_image[0]}
        values = {
            key_of(m): m.value(statistics[name][m.statistics_key].sum(dim=0)[None]).item() for m in METRICS
        }
        values["miou"] = draw(st.sampled_from([values["miou"], float("nan")]))
        payload = draw(st.floats(1.0, 1e5, allow_nan=False))
        row = {"name": name, "kind": kind, "configuration": configuration, "seed": seed, **values,
               "payload_bytes_per_image": payload, "header_bytes": 10.0, **fields}  # fmt: skip
        rows.append(row)
        return row

    def paired(row: dict, baseline: dict) -> None:
        deltas = {f"delta_{key_of(m)}": row[key_of(m)] - baseline[key_of(m)] for m in METRICS}
        row.update(baseline_miou=baseline["miou"], **deltas)

    for seed in seeds:
        baseline = measured(f"baseline_seed{seed}", Kind.BASELINE, "baseline", seed)
        baseline["degenerate"] = draw(st.sampled_from([None, "predicts class 0 for 100.0% of the pixels"]))
        del baseline["payload_bytes_per_image"], baseline["header_bytes"]
        for value in draw(st.lists(st.sampled_from([8, 16, 64]), min_size=1, max_size=3, unique=True)):
            bits = draw(st.floats(1, 1e5))
            row = measured(f"vq_K{value}_seed{seed}", Kind.SQUEEZED, f"vq_K{value}", seed, quantizer="vq",
                           setting="num_vectors", value=value, coded_bits_per_image=bits)  # fmt: skip
            paired(row, baseline)
        reference = measured(f"none_D64_seed{seed}", Kind.SQUEEZED, "none_D64", seed, quantizer="none",
                             setting=None, value=None, coded_bits_per_image=65536.0)  # fmt: skip
        paired(reference, baseline)
        for codec in ("JPEG", "WEBP"):
            for quality in draw(st.lists(st.sampled_from([5, 50, 95]), min_size=1, max_size=3, unique=True)):
                configuration = f"{codec.lower()}_q{quality}"
                row = measured(f"{configuration}_seed{seed}", Kind.INPUT, configuration, seed, codec=codec,
                               quality=quality)  # fmt: skip
                paired(row, baseline)
        floor = {"name": f"mask_context_seed{seed}", "kind": Kind.FLOOR, "configuration": "mask_context",
                 "seed": seed, "codec": "context", "miou": baseline["miou"], "delta_miou": 0.0,
                 **{key_of(m): baseline[key_of(m)] for m in METRICS[1:]},
                 "payload_bytes_per_image": draw(st.floats(1.0, 1e4)), "header_bytes": 10.0}  # fmt: skip
        rows.append(floor)
        statistics[floor["name"]] = statistics[baseline["name"]]
        measured(f"grid_oracle_7_seed{seed}", Kind.ORACLE, "grid_oracle_7", seed, codec="context")
    return rows, statistics


def reference_of(row: dict) -> str | None:
    return f"none_D64_seed{row['seed']}" if row.get("quantizer") == "vq" else None


def is_column(key: str) -> bool:
    """Whether ``key`` is a column of the schema (a pattern such as iou_<class> included)."""
    for column in all_columns():
        name = column.name
        if key == name or key.removesuffix("_std") == name:
            return True
        if "<" in name and re.fullmatch(re.sub(r"<[^>]+>", ".+", name) + "(_std)?", key):
            return True
    return False


@RENDER
@given(sweeps())
def test_a_sweep_renders_its_tables_plot_and_report(tmp_path_factory, generated):
    rows, statistics = generated
    folder = tmp_path_factory.mktemp("sweep")
    rows = with_intervals(rows, statistics, METRICS, reference_of)
    aggregates = seed_means(rows, statistics, METRICS, reference_of)
    rule = adjust(rows + aggregates)
    methods = rate_at_quality(rows)
    tables = SweepTables(rows, [], aggregates, methods, sentences(rows, aggregates, rule))
    write_tables(folder, tables)
    with open(folder / "sweep.csv") as handle:
        table = list(csv.DictReader(handle))
    names = [row["name"] for row in table]
    assert len(names) == len(set(names))  # every row named once
    assert all(is_column(key) for key in table[0]), [key for key in table[0] if not is_column(key)]
    stored = json.loads((folder / "sweep.json").read_text())
    parts = ("rows", "aggregates", "rate_at_quality")
    written = {key for part in parts for row in stored[part] for key in row}
    assert all(is_column(key) for key in written), sorted(key for key in written if not is_column(key))
    for row in stored["rows"] + stored["aggregates"]:  # every interval written holds its estimate
        for key in row:
            if key.endswith("_low") and row[key] is not None:
                estimate = row[key.removesuffix("_low")]
                assert row[key] <= estimate <= row[key.removesuffix("_low") + "_high"], (row["name"], key)
    plot_rate_quality(rows, aggregates, "generated", folder / "rate_quality.png")
    figures = [(folder / "rate_quality.png", "mIoU against bytes")]
    write_report(folder / "report.html", "generated", {}, tables, figures)
    report = (folder / "report.html").read_text()
    assert all(row["name"] in report for row in rows)
    assert "data:image/png;base64," in report


@given(st.floats(0, 2, allow_nan=False))
def test_a_share_of_the_baseline_is_never_rounded_up_to_a_level_it_misses(share):
    shown = float(_percent_reached(share))
    assert shown <= 100 * share + 1e-6 and 100 * share - shown < 0.1 + 1e-6  # down to a tenth, never up


def test_the_share_in_a_sentence_agrees_with_the_quality_levels():
    # the case: 0.3435 / 0.3621 is 94.86 %, short of 95 %, so bytes_at_95 says never
    assert _percent_reached(0.3435 / 0.3621) == "94.8"
    assert _percent_reached(0.9499) == "94.9" and _percent_reached(0.95) == "95.0"


def test_a_sentence_over_seeds_gives_each_seeds_share_beside_their_mean():
    # seeds at 96 % and 94 %: their mean says 95, the table's bytes_at_95 counts 1 of 2 seeds reaching it
    rows = [{"name": f"vq_K8_seed{seed}", "kind": Kind.SQUEEZED, "configuration": "vq_K8", "seed": seed,
             "payload_bytes_per_image": 10.0, "miou": miou, "baseline_miou": 0.5}
            for seed, miou in ((42, 0.48), (43, 0.47))]  # fmt: skip
    line = sentences(rows, [], "Holm")[0]
    assert line.startswith("vq_K8: 10 bytes per image at 95.0 % of the baseline mIoU (seeds 94.0 to 96.0 %)")


def test_the_plot_names_each_point_marks_a_degenerate_one_and_keeps_oracles_off_the_scale(tmp_path):
    def squeezed(k, miou, degenerate=None):
        return {"name": f"vq_K{k}_seed42", "kind": Kind.SQUEEZED, "configuration": f"vq_K{k}", "seed": 42,
                "quantizer": "vq", "setting": "num_vectors", "value": k, "payload_bytes_per_image": 4.0 * k,
                "coded_bits_per_image": 24.0 * k, "miou": miou, "miou_low": miou - 0.02,
                "miou_high": miou + 0.02, "degenerate": degenerate}  # fmt: skip

    rows = [
        {"name": "baseline_seed42", "kind": Kind.BASELINE, "configuration": "baseline", "seed": 42,
         "miou": 0.42},
        squeezed(8, 0.28, "predicts background for 100.0% of the pixels"),
        squeezed(16, 0.36),
        {"name": "grid_oracle_7_seed42", "kind": Kind.ORACLE, "configuration": "grid_oracle_7", "seed": 42,
         "payload_bytes_per_image": 30.0, "miou": 0.99},
        {"name": "none_D64_seed42", "kind": Kind.SQUEEZED, "configuration": "none_D64", "seed": 42,
         "quantizer": "none", "payload_bytes_per_image": 6282.0, "coded_bits_per_image": 50176.0,
         "miou": 0.41},
    ]  # fmt: skip
    figure = plot_rate_quality(rows, [], "a sweep", tmp_path / "plot.png")
    axis = figure.axes[0]
    written = [text.get_text() for text in axis.texts]
    assert {"K8", "K16", "degenerate", "7"} <= set(written)  # the oracle above marked by its grid
    assert written.count("degenerate") == 1 and axis.get_ylim()[1] < 0.99  # the oracle does not set the scale
    key = axis.get_legend()
    legend = {
        text.get_text().replace("\n", " "): line for text, line in zip(key.get_texts(), key.get_lines())
    }
    assert "grid oracles above the plot (cells: mIoU): 7: 0.990" in legend  # and its value in the legend
    assert legend["VQ payload (measured)"].get_linestyle() == "-"
    assert legend["VQ entropy-coded, before framing"].get_linestyle() == "--"
    # a continuous reference sends its values raw: its payload only, no "entropy-coded" line
    assert [label for label in legend if label.startswith("NONE_D64")] == ["NONE_D64 payload (measured)"]
    assert key.handlelength >= 3  # long enough that a dashed handle shows its dashes


def test_the_plots_labels_never_print_over_each_other(tmp_path):
    """A sweep's four grid oracles above the range (18 to 74 bytes) and seven JPEG qualities close together
    once smeared their labels into each other; a label that would overlap one kept is hidden, a
    degenerate model's mark first, and every oracle's value stays in the legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    rows = [{"name": "baseline_seed42", "kind": Kind.BASELINE, "configuration": "baseline", "seed": 42,
             "miou": 0.42}]  # fmt: skip
    oracles = {7: (18.2, 0.586), 14: (27.4, 0.70), 28: (44.1, 0.81), 56: (74.2, 0.9)}
    for grid, (size, miou) in oracles.items():
        rows.append({"name": f"grid_oracle_{grid}_seed42", "kind": Kind.ORACLE, "seed": 42, "miou": miou,
                     "configuration": f"grid_oracle_{grid}", "payload_bytes_per_image": size})  # fmt: skip
    for quality in (5, 10, 20, 35, 50, 80, 95):
        rows.append({"name": f"jpeg_q{quality}_seed42", "kind": Kind.INPUT, "seed": 42, "codec": "JPEG",
                     "configuration": f"jpeg_q{quality}", "quality": quality, "setting": "quality",
                     "value": quality, "payload_bytes_per_image": 900 + 3 * quality,
                     "miou": 0.40})  # fmt: skip
    rows.append({"name": "vq_K8_seed42", "kind": Kind.SQUEEZED, "configuration": "vq_K8", "seed": 42,
                 "quantizer": "vq", "setting": "num_vectors", "value": 8, "payload_bytes_per_image": 935.0,
                 "coded_bits_per_image": 7000.0, "miou": 0.40,
                 "degenerate": "predicts background"})  # fmt: skip
    figure = plot_rate_quality(rows, [], "a sweep", tmp_path / "plot.png")
    axis = figure.axes[0]
    renderer = FigureCanvasAgg(figure).get_renderer()
    shown = [text for text in axis.texts if text.get_visible()]
    boxes = [text.get_window_extent(renderer) for text in shown]
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert "degenerate" in [text.get_text() for text in shown]  # kept before the labels it would cover
    assert len(shown) < len(axis.texts)  # some labels were in each other's way here
    legend = " ".join(text.get_text().replace("\n", " ") for text in axis.get_legend().get_texts())
    assert "7: 0.586, 14: 0.700, 28: 0.810, 56: 0.900" in legend
