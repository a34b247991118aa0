"""The contract every backbone follows, and how pretrained weights are chosen.

Contract: ``features(x)`` maps images (B, 3, H, W) through the frozen encoder to a feature map
(B, out_channels, h, w); ``classify(features, (H, W))`` runs the trainable head and upsamples
its logits to (B, num_classes, H, W); ``forward(x)`` returns ``{'out': logits}``.
"""

from __future__ import annotations

import copy
import hashlib
import pickle
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones import precision
from embeddings_squeeze.utils.hashing import hash_tensors

FEATURE_DTYPE = torch.float16  # the precision of frozen features, cached or live


class PixelClassifier(nn.Module):
    """Per-position class logits: a 1x1 convolution over a (B, C, h, w) feature map (a linear probe).

    ``normalize`` puts a BatchNorm without learned scale or shift first, as linear probes of
    self-supervised encoders do: feature scales differ by orders of magnitude between models (a
    random ResNet-18's last stage averages 0.07), and a plain linear head then learns only the
    majority class at any usual learning rate.
    """

    def __init__(self, in_channels: int, num_classes: int, normalize: bool = False):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels, affine=False) if normalize else nn.Identity()
        self.classifier = nn.Conv2d(in_channels, num_classes, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.norm(features))


class SegmentationBackbone(nn.Module):
    """A frozen encoder followed by a trainable head; see the module docstring for the contract."""

    name: str = ""
    out_channels: int = 0
    default_weights = None  # the torchvision WeightsEnum member that 'default' means
    feature_layer: int | None = None  # which stage of the encoder, where it has a choice
    provenance: dict = {}  # library and model names a checkpoint records beside the weights
    feature_precision: str = "float32"  # what the encoder runs in (precision.py); the module sets it
    min_training_batch: int = 1  # images a training batch needs (BatchNorm in a head trains on >= 2)

    @classmethod
    def normalization(cls) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) of the default weights' preset, used for every weights choice."""
        preset = cls.default_weights.transforms()
        return tuple(preset.mean), tuple(preset.std)

    def __init__(self, encoder: nn.Module, head: nn.Module, weights_id: str | None, normalization=None):
        super().__init__()
        self.encoder = encoder.requires_grad_(False).eval()
        self.head = head
        self._weights_id = weights_id
        self._grids: dict[int, tuple[int, int]] = {}
        self._batches_agree: dict[tuple, bool] = {}  # see features_one_by_one
        self.mean, self.std = normalization or self.normalization()

    @property
    def weights_id(self) -> str:
        """Named torchvision weights identify themselves; random or file weights by a hash."""
        if self._weights_id is None:
            self._weights_id = f"sha256:{frozen_fingerprint(self.encoder)}"
        return self._weights_id

    def train(self, mode: bool = True):
        # Lightning switches every submodule back to train mode after validation; the frozen
        # encoder must stay in eval so BatchNorm statistics and dropout never change.
        super().train(mode)
        self.encoder.eval()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Frozen features computed in ``feature_precision``, as float32 values rounded to float16.

        The feature cache stores float16; rounding live features the same way means training,
        the code histogram, rates, visualize and payloads all see the same numbers for an image.
        """
        with precision.autocast(self.feature_precision, images.device):
            encoded = self.encode(images)
        return encoded.to(FEATURE_DTYPE).float()

    def features_one_by_one(self, images: torch.Tensor) -> torch.Tensor:
        """``features`` of each image exactly as computed on its own, as a sender computes them.

        Batched matrix products may round differently from single-image ones, and features that must
        equal a payload's (the feature cache, evaluation, encode) must not. The first batch of each
        shape, device and precision is computed both ways; where the two agree to the bit, later
        batches of that shape run as one batch (the kernels' order of arithmetic depends on shapes,
        not on values), else image by image.
        """
        key = (tuple(images.shape), str(images.device), self.feature_precision)
        if len(images) > 1 and self._batches_agree.get(key):
            return self.features(images)
        each = torch.cat([self.features(image.unsqueeze(0)) for image in images])
        if len(images) > 1 and key not in self._batches_agree:
            self._batches_agree[key] = torch.equal(self.features(images), each)
        return each

    def classify(self, features: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.classify_at(features, [size])[0]

    def classify_at(self, features: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        """The head's logits upsampled to each of ``sizes``; the head runs once for all."""
        logits = self.head(features)
        return [F.interpolate(logits, size=size, mode="bilinear", align_corners=False) for size in sizes]

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"out": self.classify(self.features(images), images.shape[-2:])}

    def grid_size(self, image_size: int) -> tuple[int, int]:
        """(h, w) of the feature map for a square input of ``image_size``."""
        if image_size not in self._grids:
            # probe wherever the encoder lives: the CPU, or a GPU after the model was moved there
            device = next(self.encoder.parameters()).device
            probe = torch.zeros(1, 3, image_size, image_size, device=device)
            self._grids[image_size] = tuple(self.features(probe).shape[-2:])
        return self._grids[image_size]


def frozen_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's weights: tells random or file-loaded backbones apart, and a rebuilt
    backbone from the one a checkpoint was trained with."""
    return hash_tensors(hashlib.sha256(), module.state_dict()).hexdigest()


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Draw random initialisations from ``seed`` alone, leaving the global random state untouched.

    A random frozen backbone (``--weights none``) is then a function of its seed: checkpoints
    store the seed instead of 88 M numbers, and every run with the same seed shares one backbone.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


_RANDOM_MODELS: dict[tuple, tuple[nn.Module, str]] = {}


def random_model(
    key: tuple, seed: int, build: Callable[[], nn.Module], encoder: Callable[[nn.Module], nn.Module]
) -> tuple[nn.Module, str]:
    """``build()`` initialised from ``seed`` alone, and the fingerprint of its ``encoder(model)`` part.

    Drawing 88 M random numbers takes about a second and hashing them a third of one, and one
    process (a sweep, visualize, a test session) builds the same random backbone many times: the
    first draw of each (``key``, ``seed``) is kept, and later calls get a copy of it.
    """
    if (key, seed) not in _RANDOM_MODELS:
        with seeded(seed):
            model = build()
        _RANDOM_MODELS[(key, seed)] = (model, f"sha256:{frozen_fingerprint(encoder(model))}")
    model, weights_id = _RANDOM_MODELS[(key, seed)]
    return copy.deepcopy(model), weights_id


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict without ever executing code from the file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file {path} not found; pass --weights default, none, or an existing file")
    unreadable = (
        f"cannot load weights file {path} as a state dict (truncated, corrupt or another kind of file)"
    )
    if not zipfile.is_zipfile(path):  # torch.save writes zip archives
        raise UserError(unreadable)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(
            f"weights file {path} was refused: loading it would run code stored in the file; "
            "pass a plain state dict saved with torch.save(model.state_dict(), path)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile):
        raise UserError(unreadable) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} does not hold a state dict of tensors")
    return state


def load_matching(model: nn.Module, state: dict, path: str | Path, required_prefixes: tuple[str, ...]):
    """Load ``state`` into ``model``; every key under ``required_prefixes`` must be present."""
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tensor.shape != expected[key].shape:
            raise UserError(
                f"weights file {path} does not fit this model: {key} has shape {tuple(tensor.shape)}, "
                f"the model expects {tuple(expected[key].shape)}; is it a state dict of the same model?"
            )
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if k.startswith(required_prefixes)]
    if missing:
        raise UserError(
            f"weights file {path} lacks {len(missing)} encoder tensors (first: {missing[0]}); "
            f"is it a state dict of the same torchvision model?"
        )


def download_failed(weights_name: str, error: Exception) -> UserError:
    return UserError(
        f"could not download pretrained weights {weights_name} ({type(error).__name__}: no network?); "
        "connect to the internet, or pass --weights none (random init) or --weights PATH (a local state dict)"
    )
