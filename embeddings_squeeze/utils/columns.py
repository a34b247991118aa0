"""The sweep's table columns, each defined once: name, meaning, unit, how seeds combine.

``sweep.csv`` and ``sweep.json`` take their column order and the rate-table key behind each rate
column from here; the seed aggregates average the columns marked ``mean``; the report shows the
columns marked ``in_report``; the README's glossary is ``glossary()`` verbatim (a test checks).
``Kind`` names what a row is, and ``method_and_setting`` says which curve a row belongs to. Each
registered metric beyond IoU adds its columns (``metric_columns``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

from embeddings_squeeze.utils.metrics import METRICS, key_of, metric_named


class Kind:
    """What a row of the sweep's tables is."""

    BASELINE = "baseline"  # a seed's baseline
    SQUEEZED = "squeezed"  # a squeezed model (the continuous reference among them)
    INPUT = "input"  # the baseline on images sent as JPEG or WebP
    FLOOR = "floor"  # the baseline's own masks sent losslessly
    FLOOR_GT = "floor_gt"  # the ground truth's masks sent losslessly: sizes only
    ORACLE = "oracle"  # the ground truth reduced to a grid
    METHOD = "method"  # a method's rate at equal quality
    FAILED = "failed"  # a row whose job failed: ``reason`` says why
    MISSING = "missing"  # a row whose job has not run, or ended without a word (killed, cancelled)
    MEAN = "_mean"  # suffix of the kind of a row that averages a configuration's seeds


@dataclass(frozen=True)
class Column:
    name: str
    meaning: str
    unit: str = ""
    # mean: mean and standard deviation over seeds; same: one value; key: names the row; interval: an
    # interval's end or test over seeds and images (utils/intervals.py); count: how many seeds it holds
    # for; method: a value of a method's rate at equal quality
    over_seeds: str = "mean"
    rate_key: str | None = None  # the rate table's key a squeezed row copies into this column
    in_report: bool = True


# fmt: off
COLUMNS = (
    Column("name", "the row: `baseline_seedS`, `<type>_<point>_seedS`, `jpeg_qQ_seedS`, a floor or oracle "
           "row and its seed, or a method", over_seeds="key"),
    Column("kind", "baseline, squeezed, input (images sent as JPEG/WebP), floor, floor_gt, oracle, "
           "method (rate at equal quality); `<kind>_mean` rows average a configuration's seeds; failed or "
           "missing: a row not measured (see `reason`)", over_seeds="key"),
    Column("configuration", "the row's name without its seed: what the seed aggregates group",
           over_seeds="key", in_report=False),
    Column("quantizer", "the bottleneck type (`--quantizer_type`; `none`: the continuous reference)",
           over_seeds="key"),
    Column("setting", "the setting the sweep varies for that type (`num_vectors`, `rate_lambda`)",
           over_seeds="key"),
    Column("value", "its value for this row", over_seeds="key"),
    Column("codec", "JPEG or WEBP (input rows); png, webp or context (floor rows)", over_seeds="key"),
    Column("quality", "the image codec's quality setting", over_seeds="key"),
    Column("seed", "the seed of initialisation and batch order (the split is the same for all)",
           over_seeds="key"),
    Column("seeds", "seeds averaged (`_mean` rows)", over_seeds="key", in_report=False),
    Column("levels", "index levels per grid position (RVQ: its codebooks)", over_seeds="same",
           rate_key="index_levels", in_report=False),
    Column("alphabet_size", "values one index level can take", over_seeds="same", rate_key="alphabet_size"),
    Column("distinct_codes", "distinct code vectors in the codebook(s) after training", "codes",
           rate_key="distinct_codes"),
    Column("fixed_bits_per_image", "a fixed-length code: ceil(log2 alphabet size) per level and position",
           "bits", rate_key="fixed_bits_per_image"),
    Column("entropy_bits_per_image", "empirical entropy of the test split's own indices: what a coder "
           "tuned to this split in hindsight would spend (biased low on small splits; not a bound on "
           "adaptive coders)", "bits", rate_key="entropy_bits_per_image"),
    Column("coded_bits_per_image", "cross-entropy of the test indices under the coder's model (the "
           "training histogram; eb: its learned density): the coder's spend before framing", "bits",
           rate_key="coded_bits_per_image"),
    Column("payload_bytes_per_image", "mean length of the real encoded files, one image at a time, "
           "header included: what a sender transmits", "bytes", rate_key="payload_bytes_mean"),
    Column("payload_bytes_median", "median length of the real encoded files", "bytes",
           rate_key="payload_bytes_median", in_report=False),
    Column("header_bytes", "the fixed part of each payload or file (our header with the image's size; a "
           "container and its tables), included in payload_bytes_per_image", "bytes",
           rate_key="header_bytes"),
    Column("compression_vs_float32", "float32 embeddings' size / payload size", "ratio",
           rate_key="compression_vs_float32_payload"),
    Column("compression_vs_float16", "float16 embeddings' size / payload size", "ratio",
           rate_key="compression_vs_float16_payload", in_report=False),
    Column("compression_vs_float32_coded", "float32 embeddings' size / coded size", "ratio",
           rate_key="compression_vs_float32_coded", in_report=False),
    Column("code_usage", "share of the codes the test split uses", "fraction",
           rate_key="code_usage_on_split"),
    Column("codes_replaced_per_step", "codes re-seeded per training step after the first epoch", "codes",
           rate_key="codes_replaced_per_step_after_epoch1"),
    Column("decoder_bytes", "one-off size of what the receiver holds for the bottleneck: the weights applied "
           "to decoded values and the coder's model (histogram or coding tables)", "bytes",
           over_seeds="same", rate_key="decoder_bytes", in_report=False),
    Column("amortised_bytes_per_image", "payload_bytes_per_image plus decoder_bytes spread over 10,000 "
           "images; image codecs and lossless masks: their payload (decoders every receiver has)", "bytes",
           rate_key="amortised_bytes_per_image"),
    Column("head_bytes", "one-off size of the segmentation head (the baseline needs it too)", "bytes",
           over_seeds="same", rate_key="head_bytes", in_report=False),
    Column("miou", "mean IoU over classes on the test split, each prediction scored against its mask at "
           "the mask's own size", "fraction"),
    Column("miou_low", "lower end of miou's 95 % interval over the test images (delta method, t; over "
           "seeds too in `_mean` rows; empty: none stated, see interval_note)", "fraction",
           over_seeds="interval"),
    Column("miou_high", "upper end of miou's 95 % interval", "fraction", over_seeds="interval"),
    Column("miou_input_size", "mIoU with predictions and masks at the model's square input size (the "
           "secondary score)", "fraction", in_report=False),
    Column("baseline_miou", "the mIoU of the baseline of the row's own seed", "fraction", in_report=False),
    Column("delta_miou", "miou minus baseline_miou: the row against its own seed's baseline", "fraction"),
    Column("delta_miou_low", "lower end of delta_miou's 95 % interval (paired: the same test images for "
           "both; over seeds too in `_mean` rows)", "fraction", over_seeds="interval"),
    Column("delta_miou_high", "upper end of delta_miou's 95 % interval", "fraction", over_seeds="interval"),
    Column("delta_miou_p", "two-sided p-value of delta_miou against no difference (t, as the interval)",
           over_seeds="interval", in_report=False),
    Column("delta_miou_p_holm", "delta_miou_p after Holm's adjustment over every mIoU difference of the "
           "sweep", over_seeds="interval", in_report=False),
    Column("delta_significant", "whether delta_miou_p_holm is below 0.05 (empty: not tested); false means no "
           "difference shown, not evidence of none", "bool", over_seeds="interval"),
    Column("delta_miou_vs_reference", "miou minus that of the continuous reference of the same seed: the "
           "quantization alone", "fraction"),
    Column("delta_miou_vs_reference_low", "lower end of its 95 % interval (paired)", "fraction",
           over_seeds="interval", in_report=False),
    Column("delta_miou_vs_reference_high", "upper end of its 95 % interval", "fraction",
           over_seeds="interval", in_report=False),
    Column("delta_miou_vs_reference_p", "its two-sided p-value", over_seeds="interval", in_report=False),
    Column("delta_miou_vs_reference_p_holm", "that p-value after Holm's adjustment (the same family)",
           over_seeds="interval", in_report=False),
    Column("delta_vs_reference_significant", "whether delta_miou_vs_reference_p_holm is below 0.05", "bool",
           over_seeds="interval", in_report=False),
    Column("interval_note", "why one of the row's mIoU intervals (its own, against the baseline or the "
           "reference) is not stated: too few images, a class in too few ground truths, no spread",
           over_seeds="interval", in_report=False),
    Column("degenerate", "set when the model's predictions carry no information: one class for nearly "
           "every pixel, or IoU 0 for every class but the commonest (its mIoU can still look fair)",
           over_seeds="key"),
    Column("iou_<class>", "IoU of one class on the test split (empty: in neither ground truth nor "
           "prediction)", "fraction", in_report=False),
    Column("epochs_trained", "baselines: the epochs trained (each stops once converged, --baseline_epochs at "
           "most)", over_seeds="mean"),
    Column("converged", "baselines: whether the validation loss stopped improving (by 0.001 in 10 epochs) "
           "before --baseline_epochs; `_mean` rows: how many seeds did", "bool", over_seeds="count"),
    Column("training_seconds", "wall time of training (empty: trained by an earlier run)", "s"),
    Column("reason", "failed and missing rows: why the row has no result (the job's one-line error, or "
           "how its job ended)", over_seeds="key"),
    Column("checkpoint", "the trained model's `last.ckpt`", over_seeds="key", in_report=False),
    Column("method", "a curve (a quantizer type, an image codec) or a single reference row",
           over_seeds="key"),
    Column("points", "the method's measured points (one seed's)", over_seeds="method"),
    Column("bytes_at_<P>", "P = 90, 95, 99: bytes per image at P % of the seed's baseline mIoU, log-bytes "
           "interpolated between the two Pareto-front points around it (empty: never reached)", "bytes",
           over_seeds="method"),
    Column("bytes_at_<P>_seeds", "`_mean` rows: how many of the seeds reach P % (bytes_at_<P> is their mean "
           "only when all do)", over_seeds="method"),
    Column("bytes_at_<P>_upper_bound", "true when the cheapest point tried already reaches P %: the "
           "method may need fewer bytes, shown as `<= N`", "bool", over_seeds="method"),
    Column("bd_rate_vs_<anchor>", "anchor = jpeg, webp: Bjontegaard delta rate of the Pareto fronts "
           "against images sent with that codec (negative: fewer bytes at equal mIoU); n/a unless the "
           "fronts share at least half the narrower one's mIoU range", "%", over_seeds="method"),
    Column("miou_overlap_vs_<anchor>", "the mIoU range both fronts cover, [low, high]", "fraction",
           over_seeds="method"),
    Column("standing_vs_<anchor>", "better or worse at every rate both fronts cover, or crosses",
           over_seeds="method"),
)
# fmt: on
RATE_COLUMNS = tuple(column for column in COLUMNS if column.rate_key)  # copied from a rate table


def metric_columns() -> tuple[Column, ...]:
    """The columns of every registered metric beyond IoU (``utils/metrics.py``): its value on the
    test split with its interval, and its difference from the row's own seed's baseline."""
    columns = []
    for name in METRICS:
        if name == "iou":
            continue
        metric = metric_named(name)
        key = key_of(metric)
        columns += [
            Column(
                key, f"{metric.title} on the test split, at each mask's own size (`--metrics`)", "fraction"
            ),
            Column(
                f"{key}_low",
                f"lower end of {key}'s 95 % interval",
                "fraction",
                over_seeds="interval",
                in_report=False,
            ),
            Column(
                f"{key}_high",
                f"upper end of {key}'s 95 % interval",
                "fraction",
                over_seeds="interval",
                in_report=False,
            ),
            Column(f"delta_{key}", f"{key} minus that of the row's own seed's baseline", "fraction"),
            Column(
                f"delta_{key}_low",
                "lower end of its 95 % interval (paired)",
                "fraction",
                over_seeds="interval",
                in_report=False,
            ),
            Column(
                f"delta_{key}_high",
                "upper end of its 95 % interval",
                "fraction",
                over_seeds="interval",
                in_report=False,
            ),
        ]
    return tuple(columns)


def all_columns() -> tuple[Column, ...]:
    """The schema: the fixed columns with the metrics' columns before ``degenerate``."""
    at = next(i for i, column in enumerate(COLUMNS) if column.name == "degenerate")
    return (*COLUMNS[:at], *metric_columns(), *COLUMNS[at:])


def averaged() -> tuple[str, ...]:
    """Columns the seed aggregates average (with a standard deviation)."""
    return tuple(c.name for c in all_columns() if c.over_seeds == "mean" and "<" not in c.name)


def reported() -> tuple[str, ...]:
    """Columns of the report's results table, read left to right on a screen: the row's name, its
    quality (mIoU with its intervals and differences), what it costs, then its settings."""
    shown = [c for c in all_columns() if c.in_report and c.over_seeds != "method" and "<" not in c.name]
    names = [c.name for c in all_columns()]
    quality = set(names[names.index("miou") : names.index("degenerate") + 1])
    first = [c.name for c in shown if c.name in quality or c.name == "reason"]  # degenerate, why unmeasured
    settings = [c.name for c in shown if c.over_seeds in ("key", "same") and c.name not in (*first, "name")]
    costs = [c.name for c in shown if c.name not in (*first, *settings, "name")]
    return ("name", *first, *costs, *settings)


def is_number(value) -> bool:
    """Whether a table cell holds a number (not a flag, a word or nothing)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def by_configuration(rows: list[dict], kinds=(Kind.SQUEEZED,)) -> dict[str, list[dict]]:
    """Rows of ``kinds`` grouped by configuration (the seeds of one setting)."""
    groups = defaultdict(list)
    for row in rows:
        if row["kind"] in kinds:
            groups[row["configuration"]].append(row)
    return groups


def method_and_setting(row: dict) -> tuple[str, object]:
    """The curve a row belongs to and its point on it: (quantizer, value) for squeezed models of a
    type with a sweep axis, (codec, quality) for images sent as JPEG/WebP, (its configuration, None)
    for single points (floors, oracles, continuous references)."""
    if row["kind"] == Kind.SQUEEZED and row.get("setting"):
        return row["quantizer"], row["value"]
    if row["kind"] == Kind.INPUT:
        return row["codec"], row["quality"]
    return row["configuration"], None


# what each placeholder of a column pattern stands for
PLACEHOLDERS = {"<class>": ".+", "<P>": r"\d+", "<anchor>": "[a-z0-9]+"}


def position(key: str) -> int:
    """Where ``key`` stands in the schema: its column's, matched by name, else by a pattern such as
    ``iou_<class>``; ``<column>_std`` stands at its column. A key the schema does not name is refused,
    so a misspelt key fails where it is written instead of becoming a column of its own."""
    schema = all_columns()
    base = key.removesuffix("_std")
    for i, column in enumerate(schema):
        if column.name == base:
            return i
    for i, column in enumerate(schema):
        pattern = re.escape(column.name)
        for placeholder, meaning in PLACEHOLDERS.items():
            pattern = pattern.replace(re.escape(placeholder), meaning)
        if "<" in column.name and re.fullmatch(pattern, base):
            return i
    raise ValueError(f"{key!r} is not a column of the sweep's schema (utils/columns.py)")


def ordered(keys) -> list[str]:
    """``keys`` in the schema's order, ``<column>_std`` after its column; ties keep their order."""
    return sorted(dict.fromkeys(keys), key=lambda key: (position(key), key.endswith("_std")))


def glossary() -> str:
    """The README's glossary of the sweep's columns, as a Markdown table."""
    lines = ["| column | unit | over seeds | meaning |", "|---|---|---|---|"]
    for column in all_columns():
        lines.append(f"| `{column.name}` | {column.unit} | {column.over_seeds} | {column.meaning} |")
    return "\n".join(lines)
