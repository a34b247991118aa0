"""--converge: a run trained until its validation loss flattens, the rule checked on its own curve."""

import json
import math

from helpers import TINY, parse

from embeddings_squeeze import train_baseline
from embeddings_squeeze.engine.checkpoint import read_checkpoint
from embeddings_squeeze.engine.fitting import CONVERGED_DELTA, CONVERGED_PATIENCE
from embeddings_squeeze.engine.run_dirs import completed_epochs, converged, finished_run


def test_a_converged_run_stops_once_its_validation_loss_flattens(pet_root, tmp_path):
    # a high learning rate: the tiny head converges in about 25 epochs instead of over 60
    argv = [
        *TINY,
        "--data_path",
        pet_root,
        "--output_dir",
        tmp_path,
        "--epochs",
        60,
        "--converge",
        "--lr",
        0.05,
    ]
    last = train_baseline.main(parse(train_baseline, *argv))
    losses = [epoch["val_loss"] for epoch in json.loads((last.parent / "history.json").read_text())["epochs"]]
    # by hand: epochs since the validation loss last improved on its best by more than the rule's delta
    best, since = math.inf, 0
    for loss in losses:
        best, since = (loss, 0) if loss < best - CONVERGED_DELTA else (best, since + 1)
    assert since == CONVERGED_PATIENCE and len(losses) < 60  # it stopped on the rule, before the cap
    checkpoint = read_checkpoint(last)
    assert converged(checkpoint) and completed_epochs(checkpoint) == len(losses)
    # done: a sweep finds it finished although it trained fewer than its --epochs
    assert finished_run(str(tmp_path), last.parent.parent.name, 60, {}) == last
