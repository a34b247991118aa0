"""The sweep's table columns, each defined once: name, meaning, unit, how seeds combine.

``sweep.csv`` and ``sweep.json`` take their column order and the rate-table key behind each rate
column from here; the seed aggregates average the columns marked ``mean``; the report shows the
columns marked ``in_report``; the README's glossary is ``glossary()`` verbatim (a test checks).
``method_and_setting`` is the one place that says which curve a row belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass

SQUEEZED = "squeezed"  # the kind of a squeezed model's row


@dataclass(frozen=True)
class Column:
    name: str
    meaning: str
    unit: str = ""
    over_seeds: str = "mean"  # mean: mean and standard deviation; same: one value; key: names the row
    rate_key: str | None = None  # the rate table's key a squeezed row copies into this column
    in_report: bool = True


COLUMNS = (
    Column(
        "name",
        "the row: `baseline_seedS`, `<type>_<point>_seedS`, `jpeg_qQ`, a floor or oracle row, or a method",
        over_seeds="key",
    ),
    Column(
        "kind",
        "baseline, squeezed, input (images sent as JPEG/WebP), floor, floor_gt, oracle, "
        "squeezed_mean (seeds aggregated) or method (rate at equal quality)",
        over_seeds="key",
    ),
    Column(
        "configuration",
        "a squeezed row's name without its seed: what the seed aggregates group",
        over_seeds="key",
        in_report=False,
    ),
    Column("quantizer", "the bottleneck type (`--quantizer_type`)", over_seeds="key"),
    Column(
        "setting",
        "the setting the sweep varies for that type (`num_vectors`, `rate_lambda`)",
        over_seeds="key",
    ),
    Column("value", "its value for this row", over_seeds="key"),
    Column("codec", "JPEG or WEBP (input rows); png, webp or context (floor rows)", over_seeds="key"),
    Column("quality", "the image codec's quality setting", over_seeds="key"),
    Column(
        "seed", "the seed of initialisation and batch order (the split is the same for all)", over_seeds="key"
    ),
    Column(
        "levels",
        "index levels per grid position (RVQ: its codebooks)",
        over_seeds="same",
        rate_key="index_levels",
        in_report=False,
    ),
    Column("alphabet_size", "values one index level can take", over_seeds="same", rate_key="alphabet_size"),
    Column(
        "distinct_codes",
        "distinct code vectors in the codebook(s) after training",
        "codes",
        rate_key="distinct_codes",
    ),
    Column(
        "fixed_bits_per_image",
        "a fixed-length code: ceil(log2 alphabet size) per level and position",
        "bits",
        rate_key="fixed_bits_per_image",
    ),
    Column(
        "entropy_bits_per_image",
        "empirical entropy of the test split's own indices: what a coder "
        "tuned to this split in hindsight would spend (biased low on small splits; not a bound on "
        "adaptive coders)",
        "bits",
        rate_key="entropy_bits_per_image",
    ),
    Column(
        "coded_bits_per_image",
        "cross-entropy of the test indices under the coder's model (the "
        "training histogram; eb: its learned density): the coder's spend before framing",
        "bits",
        rate_key="coded_bits_per_image",
    ),
    Column(
        "payload_bytes_per_image",
        "mean length of the real encoded files, one image at a time, header included",
        "bytes",
        rate_key="payload_bytes_mean",
    ),
    Column(
        "payload_bytes_median",
        "median length of the real encoded files",
        "bytes",
        rate_key="payload_bytes_median",
        in_report=False,
    ),
    Column(
        "compression_vs_float32",
        "float32 embeddings' size / payload size",
        "ratio",
        rate_key="compression_vs_float32_payload",
    ),
    Column(
        "compression_vs_float16",
        "float16 embeddings' size / payload size",
        "ratio",
        rate_key="compression_vs_float16_payload",
        in_report=False,
    ),
    Column(
        "compression_vs_float32_coded",
        "float32 embeddings' size / coded size",
        "ratio",
        rate_key="compression_vs_float32_coded",
        in_report=False,
    ),
    Column(
        "code_usage", "share of the codes the test split uses", "fraction", rate_key="code_usage_on_split"
    ),
    Column(
        "codes_replaced_per_step",
        "codes re-seeded per training step after the first epoch",
        "codes",
        rate_key="codes_replaced_per_step_after_epoch1",
    ),
    Column(
        "decoder_bytes",
        "one-off size of what the receiver holds for the bottleneck",
        "bytes",
        over_seeds="same",
        rate_key="decoder_bytes",
        in_report=False,
    ),
    Column(
        "head_bytes",
        "one-off size of the segmentation head (the baseline needs it too)",
        "bytes",
        over_seeds="same",
        rate_key="head_bytes",
        in_report=False,
    ),
    Column("miou", "mean IoU over classes on the test split", "fraction"),
    Column("baseline_miou", "the mIoU of the baseline of the row's own seed", "fraction", in_report=False),
    Column("delta_miou", "miou minus baseline_miou", "fraction"),
    Column(
        "iou_<class>",
        "IoU of one class on the test split (empty: in neither ground truth nor prediction)",
        "fraction",
        in_report=False,
    ),
    Column("training_seconds", "wall time of training", "s"),
    Column("checkpoint", "the trained model's `last.ckpt`", over_seeds="key", in_report=False),
    Column("seeds", "seeds averaged (squeezed_mean rows)", over_seeds="key", in_report=False),
    Column(
        "method", "a curve (a quantizer type, an image codec) or a single reference row", over_seeds="key"
    ),
    Column("points", "the method's points (seeds of one setting averaged into one)", over_seeds="key"),
    Column(
        "bytes_at_<P>",
        "P = 90, 95, 99: the smallest measured bytes per image among the method's "
        "points reaching P % of the baseline mIoU (empty: none does)",
        "bytes",
        over_seeds="key",
    ),
    Column(
        "bd_rate_vs_<anchor>",
        "anchor = jpeg, webp: Bjontegaard delta rate against images sent "
        "with that codec (negative: fewer bytes at equal mIoU)",
        "%",
        over_seeds="key",
    ),
)
BY_NAME = {column.name: column for column in COLUMNS}
RATE_COLUMNS = tuple(column for column in COLUMNS if column.rate_key)  # copied from a rate table
AVERAGED = tuple(column.name for column in COLUMNS if column.over_seeds == "mean" and "<" not in column.name)
REPORTED = tuple(column.name for column in COLUMNS if column.in_report and column.name not in
                 ("method", "points") and "<" not in column.name)  # fmt: skip


def method_and_setting(row: dict) -> tuple[str, object]:
    """The curve a row belongs to and its point on it: (quantizer, value) for squeezed models,
    (codec, quality) for images sent as JPEG/WebP, (the row's name, None) for single points."""
    if row["kind"] == SQUEEZED:
        return row["quantizer"], row["value"]
    if row["kind"] == "input":
        return row["codec"], row["quality"]
    return row["name"], None


def ordered(keys) -> list[str]:
    """``keys`` in the schema's order: a pattern such as ``iou_<class>`` places its instances where
    it stands, ``<column>_std`` follows its column, unknown keys go last; ties keep their order."""
    exact = {column.name: i for i, column in enumerate(COLUMNS) if "<" not in column.name}
    patterns = [(column.name.split("<")[0], i) for i, column in enumerate(COLUMNS) if "<" in column.name]

    def place(key: str) -> tuple[int, bool]:
        base = key.removesuffix("_std")
        position = exact.get(base)
        if position is None:
            position = next((i for prefix, i in patterns if base.startswith(prefix)), len(COLUMNS))
        return position, key.endswith("_std")

    return sorted(dict.fromkeys(keys), key=place)


def glossary() -> str:
    """The README's glossary of the sweep's columns, as a Markdown table."""
    lines = ["| column | unit | over seeds | meaning |", "|---|---|---|---|"]
    for column in COLUMNS:
        lines.append(f"| `{column.name}` | {column.unit} | {column.over_seeds} | {column.meaning} |")
    return "\n".join(lines)
