"""Codebooks that stay trained: k-means from training vectors only, and few dead-code replacements."""

import lightning.pytorch as pl
import pytest
import torch
from helpers import vq_module
from torch.utils.data import DataLoader, TensorDataset

from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.models.quantizers import FitStart, build_quantizer, library, quantizer_config
from embeddings_squeeze.models.quantizers.vq import DEAD_CODE_SHARE

VECTORS_PER_STEP = 196  # ViT-B/32 at 224 px, batch 4: 4 x 49


def codebook_quantizer(dim, **values):
    """A vq or rvq quantizer of ``dim``-d features and latents, from flat settings as flags give them."""
    config = quantizer_config({"quantizer_type": "vq", "bottleneck_dim": dim, **values})
    return build_quantizer(dim, config, input_pixels=224 * 224)


def start(quantizer, vectors=None, vectors_per_step=VECTORS_PER_STEP):
    """Fit start as training gives it, with ``vectors`` as the pooled training features and latents
    (random ones for the standardisation when none are given)."""
    if vectors is None:
        vectors = torch.randn(64, quantizer.project_in.in_channels)
    context = FitStart(
        lambda wanted, of=None: vectors, vectors_per_step, world_size=1, reduce_sum=lambda t: t
    )
    quantizer.start(context)


def replaced_by_step(quantizer, latent) -> int:
    """Codes re-seeded by one training step on (1, D, h, w) ``latent``."""
    _, sent, loss = quantizer.quantize(latent)
    return quantizer.record(sent, loss)["replaced"]


def clustered(generator, count, centres):
    """``count`` vectors around random cluster ``centres`` (K, D)."""
    which = torch.randint(0, len(centres), (count,), generator=generator)
    return centres[which] + 0.1 * torch.randn(count, centres.shape[1], generator=generator)


@pytest.mark.parametrize("size", [64, 256])
def test_default_rule_keeps_the_codebook(size):
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(48, 16, generator=generator)
    quantizer = codebook_quantizer(16, num_vectors=size)
    start(quantizer, clustered(generator, 10 * size, centres))
    quantizer.train()
    replaced = []
    for _ in range(200):
        latent = clustered(generator, VECTORS_PER_STEP, centres).T.reshape(1, 16, 14, 14)
        replaced.append(replaced_by_step(quantizer, latent))
    # the library's default threshold (2 hits per step) re-seeded 30 of 64 codes per step and
    # every vector of the batch at K=256 in this setting
    assert sum(replaced[100:]) / 100 < 0.01 * size
    assert quantizer.distinct_codes() == size


def test_dead_code_rule_scales_with_the_step_and_the_codebook():
    quantizer = codebook_quantizer(8, quantizer_type="rvq", num_vectors=256, num_quantizers=2)
    start(quantizer, torch.randn(2560, 8))
    books = library.codebooks(quantizer.quantizer)
    assert len(books) == 2
    for book in books:
        assert book.threshold_ema_dead_code == pytest.approx(DEAD_CODE_SHARE * VECTORS_PER_STEP / 256)
        assert book.reset_cluster_size == pytest.approx(VECTORS_PER_STEP / 256)
    off = codebook_quantizer(8, quantizer_type="rvq", num_vectors=256, dead_code_threshold=0)
    start(off, torch.randn(2560, 8))
    assert not any(book.has_dead_code_replacement for book in library.codebooks(off.quantizer))


def test_replacements_are_counted():
    generator = torch.Generator().manual_seed(0)
    quantizer = codebook_quantizer(4, num_vectors=8, kmeans_init=False, dead_code_threshold=1000.0).train()
    start(quantizer, vectors_per_step=16)  # every code is "dead": all 8 are re-seeded
    assert replaced_by_step(quantizer, torch.randn(1, 4, 4, 4, generator=generator)) == 8
    assert quantizer.record(None, None)["replaced"] == 0  # counted once


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
        self.codebook = library.codes(library.codebooks(module.bottleneck.quantizer)[0]).clone()


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
