"""Integration test of the simplified baseline: classifier training, optimizer creation, inference.

    cd embeddings_squeeze && python test_simplified_baseline.py     (pytest collects it too)

Runs offline on a few synthetic pets with a randomly initialised ViT-B/32 at 64x64.
"""

import sys
import tempfile
import traceback

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torchvision.models.feature_extraction import create_feature_extractor

from embeddings_squeeze.config import DataConfig, ModelConfig
from embeddings_squeeze.data.synthetic import make_synthetic_dataset
from embeddings_squeeze.engine.setup import datamodule_for
from embeddings_squeeze.models import BaselineSegmentationModule
from embeddings_squeeze.models.backbones import precision

IMAGE_SIZE = 64


def _baseline() -> BaselineSegmentationModule:
    pl.seed_everything(0)
    return BaselineSegmentationModule(ModelConfig(weights="none", image_size=IMAGE_SIZE))


def test_backbone_classifier_training():
    module = _baseline()
    encoder_before = {k: v.clone() for k, v in module.backbone.encoder.state_dict().items()}
    head_before = {k: v.clone() for k, v in module.backbone.head.state_dict().items()}
    with tempfile.TemporaryDirectory() as root:
        make_synthetic_dataset(root, n_trainval=8, n_test=4, seed=0, min_size=48, max_size=64)
        datamodule = datamodule_for(DataConfig(data_path=root), module.model_config, seed=0)
        trainer = pl.Trainer(
            max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(module, datamodule=datamodule)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    head_after = module.backbone.head.state_dict()
    assert any(not torch.equal(head_before[k], head_after[k]) for k in head_before), "head did not train"
    encoder_after = module.backbone.encoder.state_dict()
    assert all(torch.equal(encoder_before[k], encoder_after[k]) for k in encoder_before), "encoder moved"


def test_optimizer_creation():
    module = _baseline()
    optimizer = module.configure_optimizers()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.backbone.head.parameters()}
    assert not any(p.requires_grad for p in module.backbone.encoder.parameters())


def test_model_inference():
    module = _baseline().eval()
    images = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        logits = module(images)["out"]
        # the same logits another way: torchvision's feature extractor at the encoder's last norm,
        # class token dropped, tokens on their 2x2 patch grid (float16 values, as the model rounds
        # them), the head's 1x1 convolution, then bilinear upsampling to the input size; the encoder
        # in the precision the model runs it in (--feature_precision)
        extractor = create_feature_extractor(module.backbone.encoder, return_nodes={"encoder.ln": "tokens"})
        with precision.autocast(module.backbone.feature_precision, images.device):
            tokens = extractor(images)["tokens"][:, 1:]  # (2, 1 + 4, 768) -> (2, 4, 768)
        grid = tokens.transpose(1, 2).reshape(2, 768, 2, 2).half().float()
        head = module.backbone.head.classifier
        expected = F.interpolate(
            F.conv2d(grid, head.weight, head.bias), size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear"
        )
    assert logits.shape == (2, module.num_classes, IMAGE_SIZE, IMAGE_SIZE)
    assert torch.allclose(logits, expected, atol=1e-5)


if __name__ == "__main__":
    tests = [test_backbone_classifier_training, test_optimizer_creation, test_model_inference]
    failed = 0
    for test in tests:
        try:
            test()
            print(f"PASS {test.__name__}")
        except Exception:  # report every failure with its traceback, then run the rest
            failed += 1
            print(f"FAIL {test.__name__}\n{traceback.format_exc()}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
