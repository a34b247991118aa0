import lightning.pytorch as pl
import pytest
import timm
import torch
from helpers import TEST_MODEL, tiny_datamodule, vq_module

from embeddings_squeeze import export
from embeddings_squeeze.engine.checkpoint import load_module, read_checkpoint
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.backbones.base import frozen_fingerprint
from embeddings_squeeze.models.segmentation_module import FROZEN_PREFIX


def test_checkpoint_describes_itself(trained):
    checkpoint = torch.load(trained["vq"], map_location="cpu", weights_only=True)
    info = checkpoint["embeddings_squeeze"]
    assert info["kind"] == "squeezed" and info["backbone"] == TEST_MODEL
    assert info["num_classes"] == 3 and info["class_names"] == ["pet", "background", "border"]
    # --weights none: the random backbone travels as its seed and fingerprint, not as 88 M numbers
    assert info["frozen_weights_stored"] is False
    assert not any(key.startswith(FROZEN_PREFIX) for key in checkpoint["state_dict"])
    assert trained["vq"].stat().st_size < 5e6
    hparams = checkpoint["hyper_parameters"]
    assert hparams["weights"] == "none" and hparams["backbone_seed"] == 0
    assert (
        hparams["weights_id"]
        == f"sha256:{frozen_fingerprint(load_module(trained['vq'], 'squeezed').backbone.encoder)}"
    )
    assert hparams["num_vectors"] == 8 and hparams["mask_mode"] == "trimap" and hparams["image_size"] == 64
    assert all(v is None or isinstance(v, (str, int, float, bool)) for v in hparams.values())
    assert checkpoint["datamodule_hyper_parameters"]["seed"] == 3


@pytest.mark.parametrize("weights", ["none", "default"])
def test_rebuilt_model_predicts_identically(pet_root, tmp_path, monkeypatch, torchvision_cache, weights):
    if weights == "default":  # torchvision's real loading path, fed from a stand-in cache file
        monkeypatch.setenv("TORCH_HOME", str(torchvision_cache[0]))
    pl.seed_everything(0)
    module = vq_module(weights=weights, backbone="vit")
    trainer = pl.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, accelerator="cpu", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=tiny_datamodule(pet_root, module.model_config))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    stored = torch.load(path, weights_only=True)["state_dict"]
    assert not any(k.startswith(FROZEN_PREFIX) for k in stored)  # rebuilt from a seed or by name
    rebuilt = load_module(path, "squeezed")
    images = torch.randn(2, 3, 64, 64)
    module.eval()
    assert torch.equal(rebuilt(images)["out"], module(images)["out"])


def test_missing_checkpoint(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_file_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.ckpt"
    path.write_text("hello")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_foreign_checkpoint(tmp_path):
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(UserError, match="not an embeddings_squeeze checkpoint"):
        read_checkpoint(path)


def test_truncated_checkpoint(trained, tmp_path):
    path = tmp_path / "truncated.ckpt"
    data = trained["baseline"].read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="truncated, corrupt"):
        read_checkpoint(path)


class _CreatesFileWhenUnpickled:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_checkpoint_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    torch.save({"embeddings_squeeze": _CreatesFileWhenUnpickled(marker)}, path)
    with pytest.raises(UserError, match="refused"):
        read_checkpoint(path)
    assert not marker.exists()


def test_wrong_kind(trained):
    with pytest.raises(UserError, match="needs a squeezed"):
        load_module(trained["baseline"], "squeezed", "--vq_checkpoint")


def test_every_finished_checkpoint_carries_its_code_histogram(trained, pet_root):
    run_dir = trained["vq"].parent
    best = next(run_dir.glob("best-epoch*.ckpt"))
    data = tiny_datamodule(pet_root)  # the run's split: the default --split_seed
    data.setup()
    for path in (trained["vq"], best):
        module = load_module(path, "squeezed")
        # each checkpoint's own codes for the 14 training images, counted here one image at a time
        sent = torch.cat([module.encode_image(image)[1].reshape(-1) for images, *_ in data.dataloader("train")
                          for image in images])  # fmt: skip
        assert len(sent) == 14 * 16  # images x 4x4 grid positions
        assert torch.equal(module.bottleneck.code_histogram[0], torch.bincount(sent, minlength=8)), path.name


def test_checkpoint_without_histogram_is_refused_for_coding(trained, tmp_path):
    checkpoint = torch.load(trained["vq"], weights_only=True)
    checkpoint["state_dict"]["bottleneck.code_histogram"].zero_()  # as in interrupted.ckpt
    path = tmp_path / "interrupted.ckpt"
    torch.save(checkpoint, path)
    with pytest.raises(UserError, match="no code histogram"):
        load_module(path, "squeezed").bottleneck.coder_histogram()


def _edited(trained, tmp_path, edit):
    checkpoint = torch.load(trained["vq"], weights_only=True)
    edit(checkpoint["hyper_parameters"])
    path = tmp_path / "edited.ckpt"
    torch.save(checkpoint, path)
    return path


def test_rebuilt_backbone_that_differs_is_refused(trained, tmp_path):
    # another seed stands for any change that rebuilds a different random backbone (a torch release)
    path = _edited(trained, tmp_path, lambda hparams: hparams.update(backbone_seed=7))
    with pytest.raises(UserError, match="random backbone rebuilt from seed 7 differs"):
        load_module(path, "squeezed")


def test_weights_file_missing_or_changed_is_refused(trained, tmp_path):
    weights = tmp_path / "frozen.pth"
    path = _edited(trained, tmp_path, lambda hparams: hparams.update(weights=str(weights)))
    with pytest.raises(UserError, match="which is missing"):
        load_module(path, "squeezed")
    other = timm.create_model(TEST_MODEL.removeprefix("timm:"), num_classes=0, img_size=64)
    torch.save(other.state_dict(), weights)  # a file of the same model, but not the trained weights
    with pytest.raises(UserError, match="differ from the ones it was trained with"):
        load_module(path, "squeezed")


def test_exported_checkpoint_carries_its_weights(trained, tmp_path):
    target = export.main(
        export.get_args_parser().parse_args(
            ["--checkpoint", str(trained["vq"]), "-o", str(tmp_path / "p.ckpt")]
        )
    )
    checkpoint = torch.load(target, weights_only=True)
    assert checkpoint["embeddings_squeeze"]["frozen_weights_stored"] is True
    # even a seed that would rebuild another backbone does not matter: the weights are inside
    checkpoint["hyper_parameters"]["backbone_seed"] = 7
    torch.save(checkpoint, target)
    images = torch.randn(2, 3, 64, 64)
    original, portable = load_module(trained["vq"], "squeezed"), load_module(target, "squeezed")
    assert torch.equal(portable(images)["out"], original(images)["out"])
