"""Shared test helpers: tiny settings, parsing a command's flags, running the CLI in-process."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchmetrics.classification import MulticlassJaccardIndex

from embeddings_squeeze import cli, decode, encode, visualize
from embeddings_squeeze.config import DataConfig, ModelConfig, QuantizerConfig
from embeddings_squeeze.data.labels import IGNORE_INDEX
from embeddings_squeeze.data.transforms import ImageTransform
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.setup import datamodule_for
from embeddings_squeeze.models import BaselineSegmentationModule, SqueezedSegmentationModule

# The tests' backbone: a random-init ViT-Ti/16 at 64 px, a 4x4 token grid of 192-d vectors. ViT-B/32 (the
# default --model) costs ~100 ms per image on this CPU, ViT-Ti ~12 ms; tests of ViT-B/32 itself build it.
# Features in float32: 'auto' picks bf16 on CPUs with bf16 units only, and a test must give the same
# outcome on every machine (test_precision.py tests bf16 and 'auto' themselves).
TEST_MODEL = "timm:vit_tiny_patch16_224"
TEST_PRECISION = "float32"
TINY = [
    "--model",
    TEST_MODEL,
    "--weights",
    "none",
    "--image_size",
    "64",
    "--batch_size",
    "4",
    "--accelerator",
    "cpu",
    "--feature_precision",
    TEST_PRECISION,
]


PROGRAM_COMMAND = [sys.executable, "-m", "embeddings_squeeze"]  # the command line, in a process of its own


def tiny_command(command, data, output_dir, *extra) -> list[str]:
    """``command`` on the tests' tiny model and ``data``, as a process's argv."""
    return [
        str(a)
        for a in [*PROGRAM_COMMAND, command, *TINY, "--data_path", data, "--output_dir", output_dir, *extra]
    ]


def ctrl_c_as_in_a_shell() -> None:
    """A child process's ``preexec_fn``: Ctrl-C (SIGINT) interrupts it, as a user's shell leaves it,
    whatever this process inherited (a shell ignores SIGINT in what it starts in the background)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def parse(script, *argv) -> argparse.Namespace:
    """Parse ``argv`` with a script's own parser, as its command line would."""
    return script.get_args_parser().parse_args([str(arg) for arg in argv])


def run_cli(*argv) -> int:
    """Run ``embeddings-squeeze`` in-process; returns the exit code (0 when it returns)."""
    try:
        cli.main([str(arg) for arg in argv])
    except SystemExit as exit_:
        return exit_.code
    return 0


def visualize_summary(baseline, vq, data_path, output_dir, *extra, model=TEST_MODEL) -> dict:
    """Run visualize.py's main on two checkpoints; returns its summary."""
    argv = ["--baseline_checkpoint", baseline, "--vq_checkpoint", vq, "--data_path", data_path,
            "--output_dir", output_dir, "--model", model, *extra]  # fmt: skip
    return visualize.main(parse(visualize, *argv))


def one_line_error(capsys) -> str:
    """The one error line (last, no traceback); progress bars may come before it."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    return errors[0]


def tiny_model(**changes) -> ModelConfig:
    """The tests' random-init backbone at 64 px unless ``changes`` say otherwise."""
    defaults = {
        "backbone": TEST_MODEL,
        "weights": "none",
        "image_size": 64,
        "feature_precision": TEST_PRECISION,
    }
    return ModelConfig(**{**defaults, **changes})


def baseline_module(**model) -> BaselineSegmentationModule:
    return BaselineSegmentationModule(tiny_model(**model))


def vq_module(quantizer: QuantizerConfig | None = None, **model) -> SqueezedSegmentationModule:
    return SqueezedSegmentationModule(tiny_model(**model), quantizer or QuantizerConfig(num_vectors=8))


def tiny_datamodule(root, model: ModelConfig | None = None, seed: int = 42, **data):
    """The synthetic pets under ``root`` at the model's size, never downloaded."""
    datamodule = datamodule_for(DataConfig(data_path=str(root), **data), model or tiny_model(), seed)
    datamodule.download = False
    return datamodule


def encode_and_decode_files(checkpoint, pet_root, folder: Path, count: int = 3):
    """Run the encode and decode commands on the first ``count`` synthetic images.

    Returns the module and, per image, (its (3, S, S) model input, its payload bytes, the labels of
    the decoded mask file, at the image's own size).
    """
    module = load_module(checkpoint, "squeezed")
    images = sorted((Path(pet_root) / "oxford-iiit-pet" / "images").glob("*.jpg"))[:count]
    payloads = encode.main(parse(encode, "--checkpoint", checkpoint, *images, "-o", folder / "payloads"))
    masks = decode.main(parse(decode, "--checkpoint", checkpoint, *payloads, "-o", folder / "masks"))
    hparams = module.hparams
    transform = ImageTransform(hparams.image_size, module.backbone.mean, module.backbone.std)
    files = []
    for image_path, payload_path, mask_path in zip(images, payloads, masks):
        with Image.open(image_path) as image, Image.open(mask_path) as mask:
            files.append(
                (transform(image), payload_path.read_bytes(), torch.from_numpy(np.array(mask)).long())
            )
    return module, files


def torchmetrics_miou(module, datamodule, split: str = "test") -> float:
    """A split's mIoU by torchmetrics (see ``torchmetrics_score``)."""
    return torchmetrics_score(
        module, datamodule, MulticlassJaccardIndex(module.num_classes, ignore_index=IGNORE_INDEX), split
    )


@torch.no_grad()
def torchmetrics_score(module, datamodule, metric, split: str = "test") -> float:
    """A split's score by a torchmetrics ``metric`` against each mask at its own size, from predictions
    made as a user gets them, one image at a time: the baseline's forward pass upsampled to the mask's
    size; for a squeezed model, the mask decoded from what it sends."""
    module.eval()
    files = datamodule.files[split]
    for position in range(len(files)):
        image, target = files[position][0], files.load(position, files.transform.native_labels)
        size = tuple(target.shape)
        if hasattr(module, "bottleneck"):
            prediction = module.decode_mask(module.encode_image(image)[1], size)
        else:
            prediction = forward_mask(module, image, size)
        metric.update(prediction[None].cpu(), target[None])
    return metric.compute().item()


@torch.no_grad()
def forward_mask(module, pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The labels a model's own forward pass gives one (3, S, S) image, upsampled to ``size``."""
    module.eval()
    return module.logits_from_features(module.backbone.features(pixels[None]), size).argmax(dim=1)[0]
