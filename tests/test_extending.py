"""Adding a backbone, a dataset and a quantizer from outside the package, as the README's 'Extending'
shows: registered in code for the engine's functions, and found through entry points by the command
line."""

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import (
    TINY,
    encode_and_decode_files,
    forward_mask,
    parse,
    run_cli,
    tiny_datamodule,
    torchmetrics_score,
    visualize_summary,
)
from PIL import Image
from torch import nn
from torchmetrics.classification import MulticlassRecall

from embeddings_squeeze import sweep
from embeddings_squeeze.config import (
    ComparisonConfig,
    DataConfig,
    ModelConfig,
    OptimizerConfig,
    QuantizerConfig,
    RuntimeConfig,
    TrainingConfig,
)
from embeddings_squeeze.data.labels import IGNORE_INDEX, ClassSet, index_to_labels
from embeddings_squeeze.data.registry import DATASETS, register_dataset
from embeddings_squeeze.data.segmentation import SegmentationDataModule
from embeddings_squeeze.data.splits import Pool
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.engine.compare import Runs, compare
from embeddings_squeeze.engine.fitting import fit
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import BACKBONES, register_backbone
from embeddings_squeeze.models.backbones.base import PixelClassifier, SegmentationBackbone, seeded
from embeddings_squeeze.models.quantizers import QUANTIZERS


class ToyBackbone(SegmentationBackbone):
    """A frozen 4x4-patch convolution: 32 px images give an 8x8 grid of 8-d features."""

    name = "toy"
    out_channels = 8

    @classmethod
    def normalization(cls):
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)

    def __init__(self, num_classes, weights="none", image_size=32, seed=0):
        if weights != "none":
            raise UserError("the toy backbone has random weights only: pass --weights none")
        with seeded(seed):
            encoder = nn.Conv2d(3, self.out_channels, kernel_size=4, stride=4)
        super().__init__(encoder, PixelClassifier(self.out_channels, num_classes), weights_id=None)

    def encode(self, images):
        return self.encoder(images)


class ToyDataset(SegmentationDataModule):
    """Bright squares on dark noise, written under <data_path>/toy by ``fetch`` (its 'download')."""

    name = "toy"
    title = "toy squares"

    @classmethod
    def fixed_classes(cls, mask_mode):
        return ClassSet(("floor", "square"), ((40, 40, 40), (250, 250, 250)))

    def to_labels(self, mask):
        return index_to_labels(mask, 2, 255)

    def found(self):
        return (self.folder / "toy").is_dir()

    def missing_message(self):
        return f"no toy data in {self.folder}"

    def fetch(self):
        rng = np.random.default_rng(0)
        (self.folder / "toy").mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 60, size=(32, 32, 3), dtype=np.uint8)
            mask = np.zeros((32, 32), dtype=np.uint8)
            top, left = rng.integers(0, 16, size=2)
            pixels[top : top + 16, left : left + 16] = 230
            mask[top : top + 16, left : left + 16] = 1
            Image.fromarray(pixels).save(self.folder / "toy" / f"{i}.png")
            Image.fromarray(mask).save(self.folder / "toy" / f"{i}_mask.png")

    def pools(self):
        images = [self.folder / "toy" / f"{i}.png" for i in range(12)]
        masks = [path.with_name(f"{path.stem}_mask.png") for path in images]

        def read(i):
            return Image.open(images[i]).convert("RGB"), Image.open(masks[i])

        return {
            "trainval": Pool(images[:8], masks[:8], read),
            "test": Pool(images[8:], masks[8:], lambda i: read(8 + i)),
        }


class EntryPointBackbone(ToyBackbone):
    name = "toy_entry"


class EntryPointDataset(ToyDataset):
    name = "toy_entry"


@pytest.fixture
def registries(monkeypatch):
    """Registrations made by a test end with it."""
    for registry in (BACKBONES, DATASETS, QUANTIZERS):
        monkeypatch.setattr(registry, "entries", dict(registry.entries))


def install_plugin(site: Path, monkeypatch, entry_points: str, modules: dict[str, str] | None = None) -> None:
    """An installed package named toy-plugin: its ``entry_points.txt`` and module files, on sys.path."""
    metadata = site / "toy_plugin-0.1.dist-info"
    metadata.mkdir(parents=True)
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (metadata / "entry_points.txt").write_text(entry_points)
    for name, source in (modules or {}).items():
        (site / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(site))


def test_registered_backbone_and_dataset_run_through_fit_and_compare(registries, tmp_path):
    register_backbone(ToyBackbone)
    register_dataset(ToyDataset)
    model = ModelConfig(
        backbone="toy", dataset="toy", weights="none", image_size=32, feature_precision="float32"
    )
    data = DataConfig(data_path=str(tmp_path / "data"), batch_size=4)
    training = TrainingConfig(epochs=8, output_dir=str(tmp_path / "runs"), cache_features="off")
    runtime, optimizer = RuntimeConfig(accelerator="cpu"), OptimizerConfig(lr=0.05)
    baseline = fit("toy_baseline", model, data, training, runtime, optimizer)
    squeezed = fit("toy", model, data, training, runtime, optimizer, QuantizerConfig(num_vectors=8))
    view = ComparisonConfig(output_dir=str(tmp_path / "vis"), n_best=1, n_worst=1)
    report = compare(Runs(baseline, squeezed), replace(data, split_seed=None), runtime, view, "toy", "toy")
    baseline_scores = report.result.models["baseline"]
    assert list(baseline_scores.class_iou) == ["floor", "square"] and report.result.images == 4
    assert baseline_scores["miou"].value > 0.6  # bright squares on dark noise are easy: the head learned them
    info = read_checkpoint(squeezed)["embeddings_squeeze"]
    assert info["backbone"] == "toy" and info["dataset"] == "toy"
    assert (tmp_path / "vis" / "best_results_test.png").is_file()


def test_entry_points_make_them_available_to_the_command_line(registries, tmp_path, monkeypatch):
    install_plugin(
        tmp_path / "site", monkeypatch,
        "[embeddings_squeeze.backbones]\ntoy_entry = test_extending:EntryPointBackbone\n"
        "[embeddings_squeeze.datasets]\ntoy_entry = test_extending:EntryPointDataset\n",
    )  # fmt: skip
    argv = ["train-baseline", "--model", "toy_entry", "--dataset", "toy_entry", "--weights", "none",
            "--image_size", 32, "--epochs", 1, "--accelerator", "cpu", "--data_path", tmp_path / "data",
            "--output_dir", tmp_path / "runs", "--experiment_name", "plugin"]  # fmt: skip
    assert run_cli(*argv) == 0
    checkpoint = read_checkpoint(tmp_path / "runs" / "plugin_baseline" / "version_0" / "last.ckpt")
    assert checkpoint["embeddings_squeeze"]["class_names"] == ["floor", "square"]
    assert torch.is_tensor(checkpoint["state_dict"]["backbone.head.classifier.weight"])


def readme_code(heading: str) -> str:
    """The code the README's 'Extending' shows after ``heading``, as its reader would copy it."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme[readme.index(heading) :]
    return section[section.index("```python\n") + len("```python\n") : section.index("\n```\n")]


def readme_quantizer() -> str:
    return readme_code("**A quantizer of your own, complete**")


def test_the_readme_metric_scores_through_the_command_line(trained, pet_root, tmp_path, monkeypatch):
    install_plugin(
        tmp_path / "site", monkeypatch, "[embeddings_squeeze.metrics]\nrecall = my_metrics:Recall\n",
        {"my_metrics": readme_code("**A metric of your own**")},
    )  # fmt: skip
    summary = visualize_summary(trained["baseline"], trained["vq"], pet_root, tmp_path, "--metrics", "recall",
                                "--rank_by", "delta_recall")  # fmt: skip
    data = tiny_datamodule(pet_root)
    data.setup()
    for model, run in (("baseline", "baseline"), ("squeezed", "vq")):
        module = load_module(trained[run], model)
        recall = MulticlassRecall(module.num_classes, average="macro", ignore_index=IGNORE_INDEX)
        assert summary[f"{model}_recall"] == pytest.approx(torchmetrics_score(module, data, recall), abs=1e-6)
    with open(tmp_path / "scores_test.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == summary["images"] and all(
        float(row["recall_difference"])
        == pytest.approx(float(row["squeezed_recall"]) - float(row["baseline_recall"]))
        for row in rows
    )


def test_the_readme_quantizer_runs_through_every_command(
    registries, trained, pet_root, tmp_path, monkeypatch
):
    entry = "[embeddings_squeeze.quantizers]\nround = my_quantizers:UniformRounding\n"
    install_plugin(tmp_path / "site", monkeypatch, entry, {"my_quantizers": readme_quantizer()})
    common = [*TINY, "--data_path", pet_root, "--epochs", 1]
    argv = ["squeeze", *common, "--output_dir", tmp_path / "runs", "--experiment_name", "round",
            "--quantizer_type", "round", "--round_levels", 3]  # fmt: skip
    assert run_cli(*argv) == 0
    checkpoint = tmp_path / "runs" / "round" / "version_0" / "last.ckpt"
    assert read_checkpoint(checkpoint)["hyper_parameters"]["round_levels"] == 3

    summary = visualize_summary(trained["baseline"], checkpoint, pet_root, tmp_path / "vis")
    rate = summary["rate"]
    assert rate["quantizer_type"] == "round" and rate["alphabet_size"] == 9  # 3 x 3 value pairs
    assert rate["fixed_bits_per_image"] == 4 * 16  # ceil(log2 9) bits at each of 4 x 4 positions

    module, files = encode_and_decode_files(checkpoint, pet_root, tmp_path)
    for pixels, payload, labels in files:
        assert torch.equal(labels, forward_mask(module, pixels, labels.shape))  # the receiver's mask

    argv = [*common, "--output_dir", tmp_path / "sweep", "--subset_size", 4, "--quantizer_type", "round",
            "--round_levels", 3, "--jpeg_qualities", 50]  # fmt: skip
    rows = sweep.main(parse(sweep, *argv))
    row = next(r for r in rows if r.get("quantizer") == "round")
    assert (row["name"], row["setting"], row["value"]) == ("round_L3_seed42", "round_levels", 3)
    methods = json.loads((tmp_path / "sweep" / "sweep.json").read_text())["rate_at_quality"]
    assert row["alphabet_size"] == 9 and "round" in {method["method"] for method in methods}
