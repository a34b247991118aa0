"""Codebooks that stay trained: k-means from training vectors only, and few dead-code replacements."""

import lightning.pytorch as pl
import pytest
import torch
from helpers import vq_module
from torch.utils.data import DataLoader, TensorDataset

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers import DEAD_CODE_SHARE, Quantizer

VECTORS_PER_STEP = 196  # ViT-B/32 at 224 px, batch 4: 4 x 49


def clustered(generator, count, centres):
    """``count`` vectors around random cluster ``centres`` (K, D)."""
    which = torch.randint(0, len(centres), (count,), generator=generator)
    return centres[which] + 0.1 * torch.randn(count, centres.shape[1], generator=generator)


@pytest.mark.parametrize("size", [64, 256])
def test_default_rule_keeps_the_codebook(size):
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(48, 16, generator=generator)
    quantizer = Quantizer(QuantizerConfig("vq", num_vectors=size), dim=16)
    quantizer.configure_dead_codes(VECTORS_PER_STEP)
    quantizer.initialize_codebooks(clustered(generator, 10 * size, centres), VECTORS_PER_STEP)
    quantizer.train()
    replaced = []
    for _ in range(200):
        latent = clustered(generator, VECTORS_PER_STEP, centres).T.reshape(1, 16, 14, 14)
        quantizer(latent)
        replaced.append(quantizer.read_codes_replaced())
    # the library's default threshold (2 hits per step) re-seeded 30 of 64 codes per step and
    # every vector of the batch at K=256 in this setting
    assert sum(replaced[100:]) / 100 < 0.01 * size
    assert quantizer.distinct_codes() == size


def test_dead_code_rule_scales_with_the_step_and_the_codebook():
    quantizer = Quantizer(QuantizerConfig("rvq", num_vectors=256, num_quantizers=2), dim=8)
    quantizer.configure_dead_codes(VECTORS_PER_STEP)
    for book in quantizer.codebooks():
        assert book.threshold_ema_dead_code == pytest.approx(DEAD_CODE_SHARE * VECTORS_PER_STEP / 256)
        assert book.reset_cluster_size == pytest.approx(VECTORS_PER_STEP / 256)
    off = Quantizer(QuantizerConfig("rvq", num_vectors=256, num_quantizers=2, dead_code_threshold=0), dim=8)
    off.configure_dead_codes(VECTORS_PER_STEP)
    assert not any(book.has_dead_code_replacement for book in off.codebooks())


def test_replacements_are_counted():
    generator = torch.Generator().manual_seed(0)
    config = QuantizerConfig("vq", num_vectors=8, kmeans_init=False, dead_code_threshold=1000.0)
    quantizer = Quantizer(config, dim=4).train()
    quantizer.configure_dead_codes(16)  # every code is "dead": all 8 are re-seeded
    quantizer(torch.randn(1, 4, 4, 4, generator=generator))
    assert quantizer.read_codes_replaced() == 8 and quantizer.read_codes_replaced() == 0


class FeatureData(pl.LightningDataModule):
    """Cached-feature batches: training vectors near 0, validation vectors far away (near +20)."""

    def __init__(self, batch_size: int = 4):
        super().__init__()
        self.save_hyperparameters()
        generator = torch.Generator().manual_seed(0)
        self.train = self._split(generator, 32, shift=0.0)
        self.val = self._split(generator, 8, shift=20.0)

    @staticmethod
    def _split(generator, count, shift):
        features = torch.randn(count, 768, 2, 2, generator=generator) + shift
        labels = torch.randint(0, 3, (count, 64, 64), generator=generator)
        return TensorDataset(features, labels, torch.arange(count))

    def train_dataloader(self):
        return DataLoader(self.train, batch_size=self.hparams.batch_size)

    def val_dataloader(self):
        return DataLoader(self.val, batch_size=self.hparams.batch_size)


class CodebookAtTrainStart(pl.Callback):
    """The codebook as the first training step finds it: after Lightning's sanity check."""

    def on_train_start(self, trainer, module):
        self.codebook = module.bottleneck.quantizer.codebooks()[0].embed[0].clone()


def test_kmeans_starts_from_training_vectors_only():
    pl.seed_everything(0)
    module = vq_module(QuantizerConfig(num_vectors=32, bottleneck_dim=8), backbone="vit")  # 768 channels
    data = FeatureData()
    capture = CodebookAtTrainStart()
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=1, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=2, callbacks=[capture],
    )  # fmt: skip
    with torch.no_grad():
        train_latent = module.bottleneck.latent(data.train.tensors[0]).permute(0, 2, 3, 1).reshape(-1, 8)
        val_latent = module.bottleneck.latent(data.val.tensors[0]).permute(0, 2, 3, 1).reshape(-1, 8)
    trainer.fit(module, datamodule=data)
    codes = capture.codebook
    # every code sits among the training vectors, none among the validation vectors
    assert torch.cdist(codes, train_latent).min(dim=1).values.max() < torch.cdist(codes, val_latent).min()
    # 32 codes from batches of 16 vectors: several batches were pooled, every code is distinct
    assert len(torch.unique(codes, dim=0)) == 32
