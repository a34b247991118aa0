"""The specification's flags and defaults, derived from config.py, in every script that promises them."""

import re
from dataclasses import fields

import pytest
from helpers import parse

from embeddings_squeeze import squeeze, train_baseline, visualize


def test_seed_flags_and_defaults():
    baseline = parse(train_baseline)
    assert (baseline.backbone, baseline.epochs, baseline.batch_size, baseline.lr) == ("vit", 10, 4, 1e-3)
    assert baseline.experiment_name is None and baseline.subset_size is None
    vq = parse(squeeze, "--model", "deeplab", "--codebook_size", 256)  # --num_vectors' alias
    assert (vq.backbone, vq.num_vectors) == ("deeplab", 256)
    shown = parse(visualize, "--vq_checkpoint", "v.ckpt", "--baseline_checkpoint", "b.ckpt")
    assert (shown.dataset_split, shown.n_best, shown.n_worst) == ("test", 5, 5)
    assert (shown.output_dir, shown.batch_size) == ("./visualizations", 4)
    # the model (the seed's default: vit), split seed and subset come from the checkpoints unless given
    assert shown.backbone is None and shown.split_seed is None and shown.subset_size is None
    explicit = parse(
        visualize, "--vq_checkpoint", "v.ckpt", "--baseline_checkpoint", "b.ckpt", "--model", "vit"
    )
    assert explicit.backbone == "vit"  # then checked against them


@pytest.mark.parametrize(
    "script,argv", [(squeeze, ["--dead_code_threshold", "-1"]), (squeeze, ["--dead_code_threshold", "often"])]
)
def test_bad_values_are_refused_by_the_parser(script, argv, capsys):
    with pytest.raises(SystemExit):
        parse(script, *argv)
    assert "--dead_code_threshold" in capsys.readouterr().err


def test_the_help_names_every_built_in_choice():
    # the help of --model, --dataset and --metrics is written by hand (reading the registries would load
    # torch for every --help); it must still name each built-in entry, with its title where it has one
    from embeddings_squeeze.config import ComparisonConfig, DataConfig, ModelConfig
    from embeddings_squeeze.data.registry import DATASETS
    from embeddings_squeeze.models.backbones import BACKBONES
    from embeddings_squeeze.utils.metrics import METRICS

    helps = {item.name: item.metadata["help"] for config in (ModelConfig, DataConfig, ComparisonConfig)
             for item in fields(config)}  # fmt: skip
    for field_name, registry in (("backbone", BACKBONES), ("dataset", DATASETS), ("metrics", METRICS)):
        for name, cls in registry.entries.items():
            if field_name == "metrics" and name == "iou":
                continue  # always on: the help says so
            assert re.search(rf"\b{name}\b", helps[field_name]), (field_name, name)
    for name, cls in DATASETS.entries.items():
        assert cls.title in helps["dataset"] or name == "folder", name  # the folder dataset: "your images/"
