"""Compare a baseline and a VQ checkpoint on one split: scores, rate, summary and figures on disk."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

from embeddings_squeeze.config import ComparisonConfig, DataConfig, RuntimeConfig
from embeddings_squeeze.engine.checkpoint import (
    build_module,
    check_pair,
    expect_classes,
    expect_kind,
    read_checkpoint,
)
from embeddings_squeeze.engine.evaluation import compare_models
from embeddings_squeeze.engine.run_dirs import prepare_output_dir
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.task_floor import TaskFloor


def compare(
    baseline_path: str | Path,
    vq_path: str | Path,
    model_name: str,
    data: DataConfig,
    dataset: str | None,
    runtime: RuntimeConfig,
    view: ComparisonConfig = ComparisonConfig(),
    reference_path: str | Path | None = None,
) -> dict:
    """Rebuild the models from their checkpoints alone, score every image of ``view.dataset_split``.

    Writes scores_<split>.csv (every image), summary_<split>.json (metrics with their intervals,
    and the rate table) and the best/worst figures to ``view.output_dir``; returns the summary. The
    split is the one the VQ model was trained with (its split seed and validation share), unless
    ``data.split_seed`` is given. ``dataset`` (None: the checkpoints') must be the one they were
    trained on, and the data found must have their classes. ``reference_path``: a continuous
    bottleneck (``--quantizer_type none``) scored beside them, to separate quantization loss from
    the bottleneck's projections.
    """
    baseline_checkpoint = read_checkpoint(baseline_path)
    vq_checkpoint = read_checkpoint(vq_path)
    expect_kind(baseline_checkpoint, BASELINE, "--baseline_checkpoint", baseline_path)
    expect_kind(vq_checkpoint, SQUEEZED, "--vq_checkpoint", vq_path)
    check_pair(model_name, dataset, baseline_checkpoint, vq_checkpoint)
    reference = None
    if reference_path is not None:
        reference_checkpoint = read_checkpoint(reference_path)
        expect_kind(reference_checkpoint, SQUEEZED, "--reference_checkpoint", reference_path)
        check_pair(model_name, dataset, baseline_checkpoint, reference_checkpoint)
        reference = build_module(reference_checkpoint, reference_path)
    trained = vq_checkpoint["datamodule_hyper_parameters"]
    split_seed = trained["split_seed"] if data.split_seed is None else data.split_seed
    data = replace(data, split_seed=split_seed, val_fraction=trained["val_fraction"])
    baseline = build_module(baseline_checkpoint, baseline_path)
    vq = build_module(vq_checkpoint, vq_path)
    datamodule = datamodule_for(data, vq.model_config, trained["seed"])
    datamodule.prepare_data()
    datamodule.setup()
    expect_classes(vq, datamodule.classes.names, datamodule.folder)
    output_dir = prepare_output_dir(view.output_dir)
    split = view.dataset_split
    fields = ["position", "image_id", "baseline_iou", "vq_iou", *(["reference_iou"] if reference else []),
              "iou_difference"]  # fmt: skip
    with open(output_dir / f"scores_{split}.csv", "w", newline="") as scores:
        writer = csv.DictWriter(scores, fieldnames=fields)
        writer.writeheader()
        comparison = compare_models(
            baseline,
            vq,
            datamodule,
            split,
            pick_device(runtime),
            n_best=view.n_best,
            n_worst=view.n_worst,
            record=writer.writerow,
            rank_by=(view.rank_by,),
            floor=TaskFloor(vq.class_names),
            reference=reference,
        )
    summary = {
        **comparison.summary(),
        "split": split,
        "baseline_checkpoint": str(baseline_path),
        "vq_checkpoint": str(vq_path),
        **({"reference_checkpoint": str(reference_path)} if reference else {}),
        "rate": comparison.rate,
        "task_floor": comparison.task_floor,
    }
    write_json(output_dir / f"summary_{split}.json", summary)
    draw_rankings(comparison, view.rank_by, split, view.n_best, view.n_worst, output_dir)
    return summary
