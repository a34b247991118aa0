"""Any timm model that yields a spatial feature map, frozen, with a 1x1-convolution head.

Transformers (models with a patch embedding and prefix tokens) give their last block's tokens,
with the class and register tokens dropped and the rest laid out on the patch grid; every other
model goes through timm's ``features_only`` wrapper, whose last stage is used unless
``feature_layer`` picks another. Channels, patch size, prefix-token count and normalisation all
come from the model and its own pretrained config, never from constants here.
"""

from __future__ import annotations

import difflib

import torch
from torch import nn

from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import (
    PixelClassifier,
    SegmentationBackbone,
    random_model,
    read_state_dict,
)

PREFIX = "timm:"


def _timm():
    import timm  # here: importing timm costs a second that the built-in backbones never pay

    return timm


def check_name(model_name: str) -> None:
    """Refuse a name timm does not know, suggesting the closest ones it does."""
    timm = _timm()
    if timm.is_model(model_name):
        return
    close = difflib.get_close_matches(model_name, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(PREFIX + name for name in close)}? " if close else ""
    raise UserError(
        f"unknown timm model {model_name!r} in --model {PREFIX}{model_name}; {hint}"
        "python -c \"import timm; print(timm.list_models('*name*'))\" lists the names"
    )


def normalization(model_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the model's own pretrained config, used for every weights choice."""
    check_name(model_name)
    timm = _timm()
    config = timm.data.resolve_data_config(
        pretrained_cfg=timm.models.get_pretrained_cfg(model_name).to_dict()
    )
    return tuple(config["mean"]), tuple(config["std"])


def _is_token_model(model: nn.Module) -> bool:
    return hasattr(model, "patch_embed") and isinstance(getattr(model, "num_prefix_tokens", None), int)


def _create(model_name: str, image_size: int, **options) -> nn.Module:
    timm = _timm()
    try:  # transformers size their position embeddings to the input; CNNs take no img_size
        return timm.create_model(model_name, img_size=image_size, **options)
    except TypeError:
        return timm.create_model(model_name, **options)


def _encoder(
    model_name: str, image_size: int, feature_layer: int | None, weights: str = "none", state=None
) -> nn.Module:
    """The frozen part of ``model_name``: the token model itself, or its ``features_only`` wrapper.

    A randomly initialised build tells which kind the model is and lists its stages; the weights
    (timm's download, ``weights='default'``, or a ``state`` dict) go into the final build only.
    """
    probe = _create(model_name, image_size, num_classes=0)
    weights = {} if weights == "none" else {"pretrained": True}
    if state is not None:
        # timm loads a headless or features-only model leniently (missing tensors stay random):
        # every tensor of the network must be in the file
        missing = [key for key in probe.state_dict() if key not in state]
        if missing:
            raise UserError(
                f"the weights file lacks {len(missing)} of the {len(probe.state_dict())} tensors of timm "
                f"model {model_name} (first: {missing[0]}); is it a state dict of the same model?"
            )
        weights["pretrained_cfg_overlay"] = {"state_dict": state}  # loaded as timm loads its downloads
    if _is_token_model(probe):
        if feature_layer is not None:
            raise UserError(
                f"--feature_layer picks a stage of a CNN; {PREFIX}{model_name} is a transformer, whose "
                "last block's tokens are used: leave --feature_layer out"
            )
        return _create(model_name, image_size, num_classes=0, **weights) if weights else probe
    stages = getattr(probe, "feature_info", None)
    if not stages:
        raise UserError(
            f"{PREFIX}{model_name} gives neither patch tokens nor a stage list (features_only); "
            "choose a CNN or a vision transformer"
        )
    layer = len(stages) - 1 if feature_layer is None else feature_layer
    if not 0 <= layer < len(stages):
        described = ", ".join(
            f"{i}: {stage['num_chs']} channels, stride {stage['reduction']}" for i, stage in enumerate(stages)
        )
        raise UserError(
            f"--feature_layer {feature_layer} is not a stage of {PREFIX}{model_name}; choose {described}"
        )
    return _timm().create_model(model_name, features_only=True, out_indices=(layer,), **weights)


class TimmSegmentationBackbone(SegmentationBackbone):
    """A timm model's feature map (see the module docstring) and a 1x1-convolution head.

    Args:
        model_name: any name ``timm.list_models()`` gives, optionally with a pretrained tag.
        num_classes: outputs of the segmentation head.
        weights: 'default' (timm's pretrained weights, downloaded by timm), 'none' (random, drawn
            from ``seed``) or a path to a state dict of the timm model.
        image_size: square input side; transformers need a multiple of their patch size.
        seed: draws the random encoder for ``weights='none'``.
        feature_layer: the CNN stage to use (default: the last).
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int,
        weights: str = "default",
        image_size: int = 224,
        seed: int = 0,
        feature_layer: int | None = None,
    ):
        check_name(model_name)
        encoder, weights_id = _build(model_name, weights, image_size, seed, feature_layer)
        self.tokens = _is_token_model(encoder)
        if self.tokens:
            patch = encoder.patch_embed.patch_size
            patch = patch[0] if isinstance(patch, tuple) else patch
            if image_size % patch:
                raise UserError(
                    f"{PREFIX}{model_name} has {patch}-pixel patches: --image_size must be a multiple of "
                    f"{patch}, got {image_size}; try {max(patch, round(image_size / patch) * patch)}"
                )
            self.patch_size, channels = patch, encoder.num_features
        else:
            channels = encoder.feature_info.channels()[-1]
        super().__init__(
            encoder,
            PixelClassifier(channels, num_classes, normalize=True),
            weights_id,
            normalization(model_name),
        )
        self.name = PREFIX + model_name
        self.out_channels = channels
        self.feature_layer = feature_layer
        self.provenance = {"timm_model": model_name, "timm_version": _timm().__version__}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        if not self.tokens:
            return self.encoder(images)[0]  # (n, 3, H, W) -> (n, C, H/stride, W/stride)
        n, _, height, width = images.shape
        tokens = self.encoder.forward_features(images)  # (n, prefix + h*w, C)
        tokens = tokens[:, self.encoder.num_prefix_tokens :]  # class and register tokens dropped
        grid_h, grid_w = height // self.patch_size, width // self.patch_size
        return tokens.transpose(1, 2).reshape(n, tokens.shape[-1], grid_h, grid_w)


def _build(
    model_name: str, weights: str, image_size: int, seed: int, feature_layer: int | None
) -> tuple[nn.Module, str | None]:
    """The frozen encoder and, for timm's pretrained weights, their identity (None: hash it later)."""
    if weights == "none":
        return random_model(
            ("timm", model_name, image_size, feature_layer),
            seed,
            lambda: _encoder(model_name, image_size, feature_layer),
            lambda m: m,
        )
    if weights == "default":
        try:
            encoder = _encoder(model_name, image_size, feature_layer, "default")
        except (OSError, RuntimeError) as error:  # huggingface_hub's offline errors are OSErrors
            raise UserError(
                f"could not download timm's pretrained weights for {model_name} ({type(error).__name__}: "
                "no network, or the model has no pretrained weights?); connect to the internet, or pass "
                "--weights none (random init) or --weights PATH (a local state dict)"
            ) from None
        source = _timm().models.get_pretrained_cfg(model_name)
        return encoder, f"timm:{source.hf_hub_id or source.url or model_name}"
    state = read_state_dict(weights)  # checked here: never unpickles code, one clear line when wrong
    try:
        encoder = _encoder(model_name, image_size, feature_layer, weights, state)
    except RuntimeError as error:  # load_state_dict's missing, unexpected or mis-shaped keys
        first = str(error).strip().splitlines()[0]
        raise UserError(
            f"weights file {weights} does not fit timm model {model_name} ({first}); "
            "is it a state dict of the same model?"
        ) from None
    return encoder, None
