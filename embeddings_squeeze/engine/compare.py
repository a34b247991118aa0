"""Compare a baseline and a squeezed checkpoint on one split: scores, rate, summary and figures on disk."""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, replace
from pathlib import Path

from embeddings_squeeze import PROGRAM
from embeddings_squeeze.config import CHECKPOINT_FLAGS, ComparisonConfig, DataConfig, RuntimeConfig
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.engine.baseline_cache import BaselineStore
from embeddings_squeeze.engine.checkpoint import (
    build_module,
    check_pair,
    checkpoint_file,
    expect_classes,
    expect_kind,
    read_checkpoint,
    training_differences,
)
from embeddings_squeeze.engine.evaluation import CompareOptions, compare_models
from embeddings_squeeze.engine.feature_cache import cached_split
from embeddings_squeeze.engine.fitting import trained_cache_dir
from embeddings_squeeze.engine.run_dirs import completed_epochs, output_folder, refuse_overwrite, unconverged
from embeddings_squeeze.engine.setup import datamodule_for, pick_device, recorded_folder
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models import BASELINE, SQUEEZED
from embeddings_squeeze.models.quantizers import IndexQuantizer, quantizer_class
from embeddings_squeeze.utils import pages
from embeddings_squeeze.utils.code_figures import atlas_title, plot_code_atlas, plot_code_maps
from embeddings_squeeze.utils.codes import CodeAtlas, write_codes_csv
from embeddings_squeeze.utils.comparison import shares_backbone
from embeddings_squeeze.utils.figures import draw_rankings
from embeddings_squeeze.utils.files import write_json
from embeddings_squeeze.utils.metrics import check_ranking, chosen
from embeddings_squeeze.utils.records import ComparisonReport, score_fields
from embeddings_squeeze.utils.task_floor import TaskFloor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Runs:
    """The checkpoints a comparison scores: the baseline, the squeezed (VQ) model and, optionally, a
    continuous reference (``--quantizer_type none``) scored beside them, to separate the quantization's
    loss from the bottleneck's projections."""

    baseline: str | Path
    squeezed: str | Path
    reference: str | Path | None = None


def compare(
    runs: Runs,
    data: DataConfig,
    runtime: RuntimeConfig,
    view: ComparisonConfig = ComparisonConfig(),
    model_name: str | None = None,
    dataset: str | None = None,
) -> ComparisonReport:
    """Rebuild the models from their checkpoints alone, score every image of ``view.dataset_split``.

    Writes scores_<split>.csv (every image), summary_<split>.json (metrics with their intervals,
    and the rate table) and the best/worst figures to ``view.output_dir``, and for quantizers that
    send codebook indices the code maps of the same images, the code atlas and codes_<split>.csv
    (what each code stands for); returns its report. The split is the one the VQ model was
    trained with (its split seed, validation share and subset size), unless ``data`` says otherwise.
    ``model_name`` and ``dataset`` (None: the checkpoints') must be the ones they were trained with,
    and the data found must have their classes. Earlier outputs in ``view.output_dir`` are replaced
    only with ``view.overwrite``.
    """
    metrics = chosen(view.metrics)
    check_ranking(view.rank_by, metrics)
    runs = _checkpoint_files(runs)
    baseline_checkpoint, squeezed_checkpoint = pair = _read_pair(runs)
    split, indexed = view.dataset_split, _sends_indices(squeezed_checkpoint)
    names = _claimed_outputs(view, indexed)
    reference, unpaired = _held_pair(runs, view.unpaired, (model_name, dataset), pair)
    baseline = build_module(baseline_checkpoint, runs.baseline)
    squeezed = build_module(squeezed_checkpoint, runs.squeezed)
    datamodule = _scored_data(data, squeezed_checkpoint, squeezed)
    device = pick_device(runtime)
    entry = _serve_trained_cache(datamodule, split, (squeezed, baseline, reference), runs.squeezed, device)
    store = entry and BaselineStore.beside(entry, baseline_checkpoint, datamodule, split, device, metrics)
    kept = store.read() if store else None
    roles = ("baseline", "squeezed", *(("reference",) if reference else ()))
    fields = score_fields(tuple(metric.name for metric in metrics), roles)
    scored = []  # every image's scores, for the page's table too
    with output_folder(view.output_dir), open(Path(view.output_dir) / names[0], "w", newline="") as scores:
        writer = csv.DictWriter(scores, fieldnames=fields)
        writer.writeheader()

        def record(row: dict) -> None:
            writer.writerow(row)
            scored.append(row)

        atlas = CodeAtlas(squeezed.bottleneck.alphabet_size, squeezed.class_names) if indexed else None
        options = CompareOptions(
            n_best=view.n_best, n_worst=view.n_worst, record=record, rank_by=(view.rank_by,),
            floor=TaskFloor(squeezed.class_names) if kept is None else None,
            kept=kept, reference=reference, metrics=tuple(metrics), atlas=atlas,
        )  # fmt: skip
        comparison = compare_models(baseline, squeezed, datamodule, split, device, options)
    comparison.task_floor = store.settle(kept, comparison) if store else comparison.task_floor
    report = _report(comparison, runs, split, baseline_checkpoint, unpaired)
    if indexed:
        report = replace(report, codes=_draw_codes(comparison, squeezed, view))
    _write_outputs(report, comparison, view, names, (scored, fields))
    return report


def _write_outputs(
    report: ComparisonReport, comparison, view: ComparisonConfig, names: list[str], table
) -> None:
    """The summary, the best/worst figures (titled with the report's warnings) and the page of it all;
    ``table``: every image's scores and their fields, for the page."""
    folder, split = Path(view.output_dir), view.dataset_split
    write_json(folder / names[1], report.as_dict())
    draw_rankings(comparison, view.rank_by, split, view.n_best, view.n_worst, folder, tuple(report.warnings))
    figures = [name for name in names if name.endswith(".png")]
    (folder / names[-1]).write_text(pages.comparison_page(report, folder, figures, *table))


def _sends_indices(checkpoint: dict) -> bool:
    """Whether the squeezed model of ``checkpoint`` sends codebook indices (it then has code figures)."""
    return issubclass(quantizer_class(checkpoint["hyper_parameters"]["quantizer_type"]), IndexQuantizer)


def _checkpoint_files(runs: Runs) -> Runs:
    """The checkpoint files meant (a run folder stands for its last.ckpt); a missing one is refused with
    the command that trains it."""
    reference = runs.reference
    if reference is not None:
        reference = checkpoint_file(reference, f"{PROGRAM} squeeze --quantizer_type none")
    return Runs(
        baseline=checkpoint_file(runs.baseline, f"{PROGRAM} train-baseline"),
        squeezed=checkpoint_file(runs.squeezed, f"{PROGRAM} squeeze"),
        reference=reference,
    )


def _read_pair(runs: Runs) -> tuple[dict, dict]:
    """The baseline's and the squeezed model's checkpoints, each refused when it is the other kind."""
    baseline, squeezed = read_checkpoint(runs.baseline), read_checkpoint(runs.squeezed)
    expect_kind(baseline, BASELINE, CHECKPOINT_FLAGS["baseline"], runs.baseline)
    expect_kind(squeezed, SQUEEZED, CHECKPOINT_FLAGS["squeezed"], runs.squeezed)
    return baseline, squeezed


def _claimed_outputs(view: ComparisonConfig, indexed: bool) -> list[str]:
    """The names of what a comparison writes to ``view.output_dir``, the page of all the rest last;
    refused where earlier ones would be replaced without ``view.overwrite``."""
    split = view.dataset_split
    names = [f"scores_{split}.csv", f"summary_{split}.json", f"best_results_{split}.png",
             f"worst_results_{split}.png"]  # fmt: skip
    if indexed:
        names += [f"codes_best_{split}.png", f"codes_worst_{split}.png", f"code_atlas_{split}.png",
                  f"codes_{split}.csv"]  # fmt: skip
    names.append("index.html")
    if not view.overwrite:
        outputs = [Path(view.output_dir) / name for name in names]
        refuse_overwrite(outputs, "figures and scores of an earlier comparison")
    return names


def _reference(runs: Runs, model_name: str | None, dataset: str | None, baseline: dict) -> tuple:
    """The continuous reference's checkpoint and module, checked against the baseline like the
    squeezed model ((None, None): none asked for)."""
    if runs.reference is None:
        return None, None
    checkpoint = read_checkpoint(runs.reference)
    expect_kind(checkpoint, SQUEEZED, CHECKPOINT_FLAGS["reference"], runs.reference)
    check_pair(model_name, dataset, baseline, checkpoint)
    return checkpoint, build_module(checkpoint, runs.reference)


def _scored_data(data: DataConfig, checkpoint: dict, squeezed) -> SegmentationDataModule:
    """The data to score on: the squeezed model's split and subset unless ``data`` says otherwise (with
    a note), whose classes must be the model's."""
    trained = checkpoint["datamodule_hyper_parameters"]
    split_seed = trained["split_seed"] if data.split_seed is None else data.split_seed
    subset = trained["subset_size"] if data.subset_size is None else data.subset_size
    if split_seed != trained["split_seed"]:
        log.info("note: --split_seed %s instead of the VQ model's %s: the scored split may hold images it "
                 "trained on", split_seed, trained["split_seed"])  # fmt: skip
    if subset != trained["subset_size"]:
        log.info("note: scoring --subset_size %s images per split; the VQ model trained on %s", subset,
                 trained["subset_size"] or "every image")  # fmt: skip
    data = replace(data, split_seed=split_seed, val_fraction=trained["val_fraction"], subset_size=subset)
    data = recorded_folder(data, trained.get("trained_data_path"), "the VQ model")
    datamodule = datamodule_for(data, squeezed.model_config, trained["seed"])
    datamodule.prepare_data()
    datamodule.setup()
    expect_classes(squeezed, datamodule.classes.names, datamodule.folder)
    return datamodule


def _serve_trained_cache(
    datamodule: SegmentationDataModule, split: str, models: tuple, checkpoint_path: str | Path, device
) -> Path | None:
    """Score ``split`` from the feature cache the squeezed model (first of ``models``) trained with,
    where it still exists and every model shares its frozen encoder (its entry for this split is built
    on the way when missing): a later comparison of any model of the same backbone then runs only
    the heads. The entry's folder, or None where the split is not served from the cache."""
    squeezed = models[0]
    cache_dir = trained_cache_dir(checkpoint_path)
    shared = all(shares_backbone(squeezed, model) for model in models if model is not None)
    if cache_dir is None or not shared:
        return None
    log.info("scoring the %s split from the feature cache in %s", split, cache_dir)
    served = cached_split(
        datamodule.files[split], squeezed.backbone, cache_dir, datamodule.hparams.batch_size, device
    )
    datamodule.serve(split, served)
    return served.folder


def _held_pair(runs: Runs, allowed: bool, trained_as: tuple, pair: tuple[dict, dict]) -> tuple:
    """The baseline and squeezed checkpoints of ``pair`` held to each other (refused where they cannot
    be compared, ``check_pair``; ``trained_as``: the model and dataset names asked for) and to the
    reference: the reference's module (None without one) and the unpaired warning (``_unpaired``)."""
    baseline, squeezed = pair
    check_pair(*trained_as, baseline, squeezed)
    reference_checkpoint, reference = _reference(runs, *trained_as, baseline)
    return reference, _unpaired(runs, allowed, baseline, squeezed, reference_checkpoint)


def _unpaired(
    runs: Runs, allowed: bool, baseline: dict, squeezed: dict, reference: dict | None
) -> tuple[str, ...]:
    """The warning every output of a comparison of models trained on different data or splits carries
    (``--unpaired``); refused in one line without it. The reference, where given, is held to the VQ
    model's data and split. Differing training settings are noted."""
    pairs = [(baseline, squeezed, (runs.baseline, runs.squeezed), ("baseline", "VQ"))]
    if reference is not None:
        pairs.append((squeezed, reference, (runs.squeezed, runs.reference), ("VQ", "reference")))
    data, settings = [], []
    for first, second, paths, names in pairs:
        differs, noted = training_differences(first, second, tuple(map(Path, paths)), names)
        data, settings = data + differs, settings + noted
    what = "; ".join(data)
    if data and not allowed:  # the one line a refusal prints
        raise UserError(
            f"the checkpoints were trained on different data or splits ({what}), so the comparison would not "
            "be paired; train them on the same --data_path and split, or pass --unpaired to compare anyway"
        )
    if settings:
        log.info("note: the models were trained with different settings: %s", "; ".join(settings))
    if not data:
        return ()
    return (f"warning: not paired by training: the models were trained on different data or splits ({what})",)


def _report(
    comparison, runs: Runs, split: str, baseline_checkpoint: dict, unpaired: tuple[str, ...] = ()
) -> ComparisonReport:
    """The comparison's result with what was compared, its rate and task floor, and its warnings."""
    checkpoints = {"baseline": str(runs.baseline), "squeezed": str(runs.squeezed)}
    if runs.reference is not None:
        checkpoints["reference"] = str(runs.reference)
    capped = ()
    if unconverged(baseline_checkpoint):
        capped = (
            f"warning: the baseline stopped at its cap of {completed_epochs(baseline_checkpoint)} epochs "
            "before its validation loss flattened (--converge); VQ - baseline may understate the cost",
        )
    return ComparisonReport(comparison.result(), split, checkpoints, comparison.rate, comparison.task_floor,
                            extra_warnings=(*unpaired, *capped), paired_by_training=not unpaired)  # fmt: skip


def _draw_codes(comparison, squeezed, view: ComparisonConfig) -> dict:
    """The code maps of the ranked images, the code atlas and codes_<split>.csv; returns the code
    usage and the atlas's rows for the summary."""
    folder, split = Path(view.output_dir), view.dataset_split
    atlas = comparison.atlas
    training = squeezed.bottleneck.code_histogram[0].cpu().numpy()
    table = atlas.table(training)
    write_codes_csv(folder / f"codes_{split}.csv", table)
    best, worst = comparison.rankings[view.rank_by]
    for kind, items in (("best", best), ("worst", worst)):
        title = (
            f"codes of the {len(items)} {kind} VQ results on the {split} split ({kind}_results_{split}.png)"
        )
        path = folder / f"codes_{kind}_{split}.png"
        plot_code_maps(items, atlas.alphabet_size, comparison.classes, title, path)
    usage = atlas.usage(training)
    title = atlas_title(usage, view.atlas_codes, atlas.alphabet_size, split)
    plot_code_atlas(atlas, table, training, view.atlas_codes, title, folder / f"code_atlas_{split}.png")
    return {**usage, "alphabet_size": atlas.alphabet_size, "most_used": table[: view.atlas_codes]}
