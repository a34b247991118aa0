"""Compare a baseline and a VQ checkpoint on one split: scores, rate, summary and figures on disk."""

from __future__ import annotations

import csv
import logging
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
from embeddings_squeeze.engine.run_dirs import output_folder, refuse_overwrite
from embeddings_squeeze.engine.setup import datamodule_for, pick_device
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.task_floor import TaskFloor

log = logging.getLogger(__name__)


def compare(
    baseline_path: str | Path,
    vq_path: str | Path,
    model_name: str | None,
    data: DataConfig,
    dataset: str | None,
    runtime: RuntimeConfig,
    view: ComparisonConfig = ComparisonConfig(),
    reference_path: str | Path | None = None,
) -> dict:
    """Rebuild the models from their checkpoints alone, score every image of ``view.dataset_split``.

    Writes scores_<split>.csv (every image), summary_<split>.json (metrics with their intervals,
    and the rate table) and the best/worst figures to ``view.output_dir``; returns the summary. The
    split is the one the VQ model was trained with (its split seed, validation share and subset
    size), unless ``data`` says otherwise. ``model_name`` and ``dataset`` (None: the checkpoints')
    must be the ones they were trained with, and the data found must have their classes.
    ``reference_path``: a continuous bottleneck (``--quantizer_type none``) scored beside them, to
    separate quantization loss from the bottleneck's projections. Earlier outputs in
    ``view.output_dir`` are replaced only with ``view.overwrite``.
    """
    baseline_checkpoint = read_checkpoint(baseline_path)
    vq_checkpoint = read_checkpoint(vq_path)
    split = view.dataset_split
    names = (
        f"scores_{split}.csv",
        f"summary_{split}.json",
        f"best_results_{split}.png",
        f"worst_results_{split}.png",
    )
    outputs = [Path(view.output_dir) / name for name in names]
    if not view.overwrite:
        refuse_overwrite(outputs, "figures and scores of an earlier comparison")
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
    subset = trained["subset_size"] if data.subset_size is None else data.subset_size
    if split_seed != trained["split_seed"]:
        log.info("note: --split_seed %s instead of the VQ model's %s: the scored split may hold images it "
                 "trained on", split_seed, trained["split_seed"])  # fmt: skip
    if subset != trained["subset_size"]:
        log.info("note: scoring --subset_size %s images per split; the VQ model trained on %s", subset,
                 trained["subset_size"] or "every image")  # fmt: skip
    data = replace(data, split_seed=split_seed, val_fraction=trained["val_fraction"], subset_size=subset)
    baseline = build_module(baseline_checkpoint, baseline_path)
    vq = build_module(vq_checkpoint, vq_path)
    datamodule = datamodule_for(data, vq.model_config, trained["seed"])
    datamodule.prepare_data()
    datamodule.setup()
    expect_classes(vq, datamodule.classes.names, datamodule.folder)
    fields = ["position", "image_id", "baseline_iou", "vq_iou", *(["reference_iou"] if reference else []),
              "iou_difference"]  # fmt: skip
    with output_folder(view.output_dir), open(outputs[0], "w", newline="") as scores:
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
    write_json(outputs[1], summary)
    draw_rankings(comparison, view.rank_by, split, view.n_best, view.n_worst, Path(view.output_dir),
                  " ".join(summary["warnings"]))  # fmt: skip
    return summary
