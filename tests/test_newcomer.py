"""A newcomer's first hour: the mistakes people make first end in one line that says what to do,
leave nothing behind, and results that mean nothing say so."""

import json
import subprocess
import sys

import pytest
import torch
from helpers import TEST_MODEL, TINY, one_line_error, run_cli

from embeddings_squeeze import cli
from embeddings_squeeze.data.labels import ClassSet
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.data.synthetic_scenes import make_synthetic_voc
from embeddings_squeeze.utils.comparison import Comparison, degenerate

PETS = ClassSet(("pet", "background", "border"), ((1, 1, 1), (2, 2, 2), (3, 3, 3)))


def test_a_codebook_too_big_for_the_data_is_refused_before_any_run_folder(pet_root, tmp_path, capsys):
    argv = ["squeeze", *TINY, "--data_path", pet_root, "--output_dir", tmp_path, "--epochs", 1]
    assert run_cli(*argv) == 2  # the default --num_vectors 512 on 14 training images of 16 positions
    assert one_line_error(capsys) == (
        "error: the training split has 14 images x 16 grid positions = 224 vectors, fewer than the 512 "
        "codes of --num_vectors 512; pass --num_vectors 16 or less (k-means then starts each code from "
        "about 10 training vectors), or train on more images"
    )
    assert list(tmp_path.iterdir()) == []  # no run folder: the retry will be version_0


def test_a_cache_folder_that_cannot_be_written_leaves_no_output_folder(pet_root, tmp_path, capsys):
    outputs = tmp_path / "new" / "runs"
    argv = ["train-baseline", *TINY, "--data_path", pet_root, "--output_dir", outputs, "--epochs", 2,
            "--cache_dir", "/proc/no_such_folder"]  # fmt: skip
    assert run_cli(*argv) == 2
    assert one_line_error(capsys).startswith("error: cannot write to --cache_dir /proc/no_such_folder")
    assert not (tmp_path / "new").exists()


def test_a_learning_rate_that_is_no_number_is_refused_by_the_parser(capsys):
    assert run_cli("train-baseline", "--lr", "nan") == 2
    assert one_line_error(capsys).startswith("error: argument --lr: must be a positive number, got nan")


def test_a_missing_checkpoint_names_the_runs_there(trained, pet_root, tmp_path, capsys):
    missing = trained["vq"].parent.parent / "version_7" / "last.ckpt"
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", missing,
            "--data_path", pet_root, "--output_dir", tmp_path]  # fmt: skip
    assert run_cli(*argv) == 2
    assert one_line_error(capsys) == (
        f"error: checkpoint not found: {missing}; checkpoints found there: {trained['vq']}"
    )


@pytest.mark.parametrize("inside", ["oxford-iiit-pet", "oxford-iiit-pet/images"])
def test_a_data_path_inside_the_dataset_names_the_one_to_pass(tmp_path, capsys, inside):
    make_synthetic_dataset(tmp_path / "data", 4, 2, min_size=32, max_size=32)
    before = sorted(tmp_path.rglob("*"))
    argv = [
        "train-baseline",
        *TINY,
        "--data_path",
        tmp_path / "data" / inside,
        "--output_dir",
        tmp_path / "o",
    ]
    assert run_cli(*argv) == 2
    assert one_line_error(capsys) == (
        f"error: --data_path {tmp_path / 'data' / inside} is inside the Oxford-IIIT Pet folder; "
        f"pass --data_path {tmp_path / 'data'}"
    )
    assert sorted(tmp_path.rglob("*")) == before  # nothing made inside the dataset


def test_voc_one_level_too_deep(tmp_path, capsys):
    make_synthetic_voc(tmp_path / "voc", 4, 2, min_size=32, max_size=32)
    argv = ["train-baseline", *TINY, "--dataset", "voc", "--data_path", tmp_path / "voc" / "VOCdevkit",
            "--output_dir", tmp_path / "o"]  # fmt: skip
    assert run_cli(*argv) == 2
    assert f"pass --data_path {tmp_path / 'voc'}" in one_line_error(capsys)


def test_a_partial_dataset_says_what_it_lacks(tmp_path, capsys, unreachable_network):
    make_synthetic_dataset(tmp_path / "data", 4, 2, seed=0, min_size=32, max_size=32)
    folder = tmp_path / "data" / "oxford-iiit-pet"
    (folder / "images").rename(tmp_path / "images_elsewhere")
    assert (
        run_cli("train-baseline", *TINY, "--data_path", tmp_path / "data", "--output_dir", tmp_path / "o")
        == 2
    )
    assert one_line_error(capsys).endswith(
        f"it lacks images/; remove {folder} to download it again, or pass --data_path to where the whole "
        "oxford-iiit-pet/ is"
    )


def test_a_failed_download_into_an_empty_folder_leaves_it_empty(tmp_path, capsys, unreachable_network):
    empty = tmp_path / "data"
    empty.mkdir()
    assert run_cli("train-baseline", *TINY, "--data_path", empty, "--output_dir", tmp_path / "o") == 2
    assert one_line_error(capsys).endswith(
        "the download failed (URLError: no network?); pass --data_path to where oxford-iiit-pet/ is, or "
        f"run 'embeddings-squeeze make-data --root {empty}' for synthetic data"
    )
    assert list(empty.iterdir()) == []  # the oxford-iiit-pet/ the download started is gone again


def test_commands_answer_as_people_type_them(capsys):
    assert run_cli("--version") == 0
    assert capsys.readouterr().out.strip() == f"embeddings-squeeze {cli.__version__}"
    assert run_cli("--help") == 0
    listing = capsys.readouterr().out
    for command in cli.COMMANDS:
        assert f"  {command:15} {cli.summary_of(command)}" in listing and cli.summary_of(command)
    assert run_cli("trian-baseline") == 2
    assert one_line_error(capsys) == (
        "error: unknown command 'trian-baseline' (did you mean train-baseline); "
        "'embeddings-squeeze --help' lists the commands"
    )
    assert run_cli("make_data", "--n_trainvall", 3) == 2  # the seed's spelling of the command works
    assert one_line_error(capsys) == (
        "error: unrecognized arguments: --n_trainvall 3 (did you mean --n-trainval); "
        "'embeddings-squeeze make-data --help' lists every flag"
    )
    assert run_cli("train-baseline", "--version") == 0  # every command answers --version
    assert capsys.readouterr().out.strip() == f"embeddings-squeeze {cli.__version__}"
    assert run_cli("squeeze", "--num_vector", 16) == 2  # never abbreviated: a typo, said as such
    assert "error: unrecognized arguments: --num_vector 16 (did you mean --num_vectors)" in one_line_error(
        capsys
    )


@pytest.mark.parametrize("command", list(cli.COMMANDS))
def test_help_loads_no_training_stack(command):
    # how fast --help answers is measured in benchmarks/bench_cli.py; here, what it imports
    probe = "\n".join([
        "import sys", "from embeddings_squeeze import cli", "try:", f"    cli.main([{command!r}, '--help'])",
        "except SystemExit:", "    pass", "print(sorted({'torch', 'lightning'} & set(sys.modules)))",
    ])  # fmt: skip
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    # squeeze and sweep list each quantizer's own settings, which live beside its nn.Module
    expected = "['torch']" if command in ("squeeze", "sweep") else "[]"
    assert loaded.stdout.strip().splitlines()[-1] == expected


def test_flags_take_dashes_or_underscores():
    parser = cli.parser_for(None)
    parser.add_argument("--num_vectors", type=int)
    parser.add_argument("--n-trainval", type=int, dest="n_trainval")
    parsed = parser.parse_args(["--num-vectors", "8", "--n_trainval=3"])
    assert (parsed.num_vectors, parsed.n_trainval) == (8, 3)


def test_train_is_not_offered_for_scoring_and_says_why(trained, capsys):
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", trained["vq"],
            "--dataset_split", "train"]  # fmt: skip
    assert run_cli(*argv) == 2
    assert "the models were fitted on train, so scores there say nothing about new images" in one_line_error(
        capsys
    )


def test_visualize_takes_the_model_from_the_checkpoints_and_never_overwrites(
    trained, pet_root, tmp_path, capsys
):
    out = tmp_path / "vis"
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", trained["vq"],
            "--data_path", pet_root, "--output_dir", out, "--n_best", 1, "--n_worst", 1]  # fmt: skip
    assert run_cli(*argv) == 0  # no --model: the checkpoints' own (a timm ViT-Ti here, not the seed's vit)
    stamps = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    capsys.readouterr()
    assert run_cli(*argv) == 2
    assert one_line_error(capsys) == (
        f"error: {out / 'scores_test.csv'} already exists (9 of the figures and scores of an earlier "
        "comparison would be replaced); pass --overwrite to replace them, or choose another output folder"
    )
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == stamps
    assert run_cli(*argv, "--overwrite") == 0
    assert run_cli(*argv, "--overwrite", "--model", "deeplab") == 2  # given, it is checked
    assert f"pass --model {TEST_MODEL}" in one_line_error(capsys)


def test_encode_and_decode_leave_nothing_behind_and_overwrite_nothing(trained, pet_root, tmp_path, capsys):
    junk = tmp_path / "junk.esq"
    junk.write_bytes(b"\xff" * 64)  # no payload format starts with this byte
    assert run_cli("decode", "--checkpoint", trained["vq"], junk, "-o", tmp_path / "masks") == 2
    assert one_line_error(capsys) == (
        f"error: {junk} is not an embeddings_squeeze payload; pass a .esq file written by encode"
    )
    assert not (tmp_path / "masks").exists()  # no empty folder left
    assert run_cli("decode", "--checkpoint", trained["vq"], junk, "-o", tmp_path / "deep" / "a" / "b") == 2
    assert "is not an embeddings_squeeze payload" in one_line_error(capsys)
    assert not (tmp_path / "deep").exists()  # nor the parents made for it
    image = next((pet_root / "oxford-iiit-pet" / "images").glob("*.jpg"))
    assert run_cli("encode", "--checkpoint", trained["vq"], image, "-o", tmp_path / "esq") == 0
    payload = tmp_path / "esq" / f"{image.stem}.esq"
    before = payload.read_bytes()
    assert run_cli("encode", "--checkpoint", trained["vq"], image, "-o", tmp_path / "esq") == 2
    assert "already exists" in one_line_error(capsys) and payload.read_bytes() == before


def test_a_model_that_predicts_one_class_is_flagged():
    one_class = torch.tensor([[0, 30, 0], [0, 60, 0], [0, 10, 0]])  # everything predicted background
    assert degenerate(one_class, PETS.names) == "predicts background for 100.0% of the pixels"
    background_only = torch.tensor([[0, 29, 1], [0, 60, 0], [1, 9, 0]])  # pet and border IoU 0
    assert degenerate(background_only, PETS.names) == "IoU 0 for every class but background"
    fine = torch.tensor([[20, 10, 0], [5, 55, 0], [2, 3, 5]])
    assert degenerate(fine, PETS.names) is None
    comparison = Comparison(PETS)
    comparison.add(
        {"baseline": {"confusion": fine}, "squeezed": {"confusion": one_class}},
        {"baseline": fine, "squeezed": one_class},
    )
    summary = comparison.result().as_dict()
    assert summary["squeezed_degenerate"] and summary["baseline_degenerate"] is None
    # its mIoU looks fair (background alone scores 0.6), which is why the warning is needed
    assert summary["squeezed_miou"] == pytest.approx(0.6 / 3)
    assert summary["warnings"] == [
        "warning: the VQ model predicts background for 100.0% of the pixels; its mIoU means little"
    ]


def test_a_blank_model_is_flagged_where_users_look(trained, pet_root, tmp_path, capsys):
    checkpoint = torch.load(trained["vq"], weights_only=True)
    state = checkpoint["state_dict"]
    state["backbone.head.classifier.weight"].zero_()  # every logit is the bias: background, everywhere
    state["backbone.head.classifier.bias"].copy_(torch.tensor([0.0, 10.0, 0.0]))
    blank = tmp_path / "blank.ckpt"
    torch.save(checkpoint, blank)
    argv = ["visualize", "--baseline_checkpoint", trained["baseline"], "--vq_checkpoint", blank,
            "--data_path", pet_root, "--output_dir", tmp_path / "vis", "--n_best", 1,
            "--n_worst", 1]  # fmt: skip
    assert run_cli(*argv) == 0
    warning = "warning: the VQ model predicts background for 100.0% of the pixels; its mIoU means little"
    assert warning in capsys.readouterr().out.splitlines()
    summary = json.loads((tmp_path / "vis" / "summary_test.json").read_text())
    assert summary["warnings"] == [warning]
    assert summary["squeezed_degenerate"] == "predicts background for 100.0% of the pixels"
