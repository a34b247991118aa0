"""The specification's flags and defaults, derived from config.py, in every script that promises them."""

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
