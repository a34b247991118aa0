import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from helpers import TEST_MODEL, baseline_module, tiny_datamodule, tiny_model, vq_module
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze.config import OptimizerConfig, QuantizerConfig
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine.inference import evaluation_batches
from embeddings_squeeze.models import BaselineSegmentationModule, SqueezedSegmentationModule
from embeddings_squeeze.models.quantizers.statistics import CodebookStatistics
from embeddings_squeeze.models.segmentation_module import predicted_labels

MODULE_CASES = [
    (BaselineSegmentationModule, {}),
    (SqueezedSegmentationModule, {"quantizer": QuantizerConfig(num_vectors=8, bottleneck_dim=16)}),
]


def fit(module, root, epochs=2, steps: int | None = None):
    """Train ``epochs`` epochs of ``steps`` batches each (None: every batch), validating after each."""
    datamodule = tiny_datamodule(root, module.model_config)
    trainer = pl.Trainer(
        max_epochs=epochs, limit_train_batches=steps, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    return trainer


@pytest.mark.parametrize("backbone", ["vit", "deeplab"])
@pytest.mark.parametrize("module_cls,extra", MODULE_CASES)
def test_fit_keeps_frozen_part_bit_identical(pet_root, backbone, module_cls, extra):
    pl.seed_everything(0)
    module = module_cls(tiny_model(backbone=backbone), **extra)
    frozen_before = {k: v.clone() for k, v in module.backbone.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in module.backbone.head.state_dict().items()}
    trainer = fit(module, pet_root, epochs=1, steps=1)  # one optimiser step shows what any would
    frozen_after = module.backbone.encoder.state_dict()
    # parameters and BatchNorm running statistics (DeepLab's ResNet) must not move
    assert all(torch.equal(frozen_before[k], frozen_after[k]) for k in frozen_before)
    if backbone == "deeplab":
        assert any("running_mean" in k for k in frozen_before)
    assert any(not torch.equal(head_before[k], v) for k, v in module.backbone.head.state_dict().items())
    assert not any(m.training for m in module.backbone.encoder.modules())
    # the last validation ran with the final weights: its numbers, recomputed here another way
    metrics = trainer.callback_metrics
    data = tiny_datamodule(pet_root, module.model_config)
    data.setup()
    module.eval()
    with torch.no_grad():
        logits = [(module(images)["out"], masks) for images, masks, _ in data.val_dataloader()]
    reference = MulticlassJaccardIndex(3, ignore_index=IGNORE_INDEX)
    for batch_logits, masks in logits:
        reference.update(batch_logits.argmax(dim=1), masks)
    assert metrics["val/miou"].item() == pytest.approx(reference.compute().item(), abs=1e-6)
    if module_cls is SqueezedSegmentationModule:
        with torch.no_grad():
            sent = torch.cat([module.indices_of(module.backbone.features(images)).reshape(-1)
                              for images, *_ in data.val_dataloader()])  # fmt: skip
        counts = torch.bincount(sent, minlength=8).double()
        shares = counts[counts > 0] / counts.sum()
        assert metrics["val/perplexity"].item() == pytest.approx(
            2 ** -(shares * shares.log2()).sum().item(), rel=1e-5
        )
        assert metrics["val/code_usage"].item() == pytest.approx(len(shares) / 8)


@pytest.mark.parametrize("module_cls,extra", MODULE_CASES)
def test_optimizer_holds_only_trainable_parameters(module_cls, extra):
    module = module_cls(tiny_model(), optimizer=OptimizerConfig(lr=0.123), **extra)
    optimizer = module.configure_optimizers()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    expected = {id(p) for p in module.backbone.head.parameters()}
    if module_cls is SqueezedSegmentationModule:
        expected |= {id(p) for p in module.bottleneck.parameters()}
    assert optimized == expected
    assert optimizer.param_groups[0]["lr"] == 0.123


def test_hyperparameters_are_plain_values():
    module = vq_module()
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in module.hparams.values())
    assert module.hparams.num_vectors == 8 and module.hparams.backbone == TEST_MODEL
    assert module.hparams.weights_id.startswith("sha256:")


def test_vq_forward_returns_indices_within_the_codebook():
    module = vq_module().eval()
    features = module.backbone.features(torch.randn(3, 3, 64, 64))
    reconstructed, loss, record = module.squeeze(features)
    indices = record.record["sent"]
    assert reconstructed.shape == features.shape and loss.ndim == 0
    assert indices.shape == (3, 4, 4, 1) and 0 <= indices.min() and indices.max() < 8  # a 4x4 grid


def test_codebook_usage_on_known_indices():
    usage = CodebookStatistics(1, 4)
    usage.update(torch.tensor([0, 1, 2, 3]).view(2, 2, 1))
    stats = usage.compute()
    assert stats["perplexity"].item() == pytest.approx(4.0) and stats["code_usage"].item() == 1.0
    usage.reset()
    usage.update(torch.full((2, 2, 1), 2))
    stats = usage.compute()
    assert stats["perplexity"].item() == pytest.approx(1.0) and stats["code_usage"].item() == 0.25
    assert stats["dead_code_fraction"].item() == 0.75


def test_codebook_usage_per_residual_level():
    usage = CodebookStatistics(2, 4)
    usage.update(torch.tensor([[0, 3], [1, 3], [2, 3], [3, 3]]))  # level 0 uniform, level 1 one code
    stats = usage.compute()
    assert [stats["perplexity_level0"].item(), stats["perplexity_level1"].item()] == pytest.approx([4.0, 1.0])
    assert stats["perplexity"].item() == pytest.approx(2.5) and stats["code_usage"].item() == 0.625


def test_codes_replaced_per_step_over_an_epoch():
    usage = CodebookStatistics(1, 4)
    for replaced in (3, 0, 1):
        usage.update(torch.zeros(2, 1, dtype=torch.long), replaced)
    usage.update(torch.zeros(2, 1, dtype=torch.long))  # an evaluation pass counts codes only
    assert usage.compute()["codes_replaced_per_step"].item() == pytest.approx(4 / 3)


def test_train_and_val_loss_are_the_same_cross_entropy(pet_root):
    pl.seed_everything(0)
    module = vq_module(QuantizerConfig(num_vectors=8, bottleneck_dim=16, vq_loss_weight=1000.0))
    metrics = fit(module, pet_root, epochs=1).callback_metrics
    data = tiny_datamodule(pet_root)
    data.setup()
    module.eval()
    with torch.no_grad():  # the validation cross-entropy, computed here by hand
        losses = [
            (F.cross_entropy(module(images)["out"], masks, ignore_index=IGNORE_INDEX), len(images))
            for images, masks, _ in data.val_dataloader()
        ]
    expected = sum(loss * size for loss, size in losses) / sum(size for _, size in losses)
    assert metrics["val/loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    # the quantizer's loss (weighted 1000x here) is logged on its own, never inside train/loss
    assert metrics["train/bottleneck_loss"].item() > 10 * metrics["train/loss"].item()
    assert metrics["train/loss"].item() < 3.0


def test_deeplab_trains_when_the_last_batch_would_hold_one_image(tmp_path):
    make_synthetic_dataset(tmp_path, 10, 2, min_size=48, max_size=64)  # 9 training images, batch 4
    pl.seed_everything(0)
    module = baseline_module(backbone="deeplab")
    trainer = fit(module, tmp_path, epochs=1)
    assert trainer.global_step == 2  # 4 + 4; the lone ninth image would break BatchNorm's statistics


def test_evaluation_loop_gives_every_module_its_mode_back():
    model = nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()).train()
    model[1].eval()
    seen = [model[0].training for _ in evaluation_batches(model, [1, 2], torch.device("cpu"), "test")]
    assert seen == [False, False]  # eval mode inside the loop
    assert model.training and model[0].training and not model[1].training  # as before it


@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**31 - 1),
    levels=st.integers(1, 4),
    with_nan=st.booleans(),
)
def test_predicted_labels_are_the_argmax_ties_and_nan_included(shape, seed, levels, with_nan):
    """Few distinct values make ties common: the first of equal maxima wins, as in ``argmax``; a NaN
    counts as the maximum, as there."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randint(0, levels, shape, generator=generator).float()
    if with_nan:
        logits[torch.rand(shape, generator=generator) < 0.1] = float("nan")
    assert torch.equal(predicted_labels(logits), logits.argmax(dim=1))
