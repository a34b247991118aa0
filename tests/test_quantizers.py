import json
import math

import pytest
import torch
from helpers import TINY, encode_and_decode_files, forward_mask, parse, visualize_summary, vq_module

from embeddings_squeeze import squeeze
from embeddings_squeeze.config import QuantizerConfig
from embeddings_squeeze.engine.checkpoint import load_module
from embeddings_squeeze.engine.rate import RateMeter, payload_coder
from embeddings_squeeze.errors import UserError
from embeddings_squeeze.models.quantizers import IndexQuantizer, build_quantizer, quantizer_config
from embeddings_squeeze.models.quantizers.fsq import FSQSettings, fsq_levels_for, parse_levels
from embeddings_squeeze.utils.payload import FIXED_LENGTH, HEADER, IndexCoder
from embeddings_squeeze.utils.rate import coded_bits, count_codes, entropy_bits

INDEX_TYPES = ("vq", "rvq", "fsq", "lfq")


def index_quantizer(quantizer_type, dim=16, **values) -> IndexQuantizer:
    """A quantizer of ``quantizer_type`` for (B, dim, h, w) maps, from flat settings as flags give them."""
    config = quantizer_config({"quantizer_type": quantizer_type, "bottleneck_dim": dim, **values})
    return build_quantizer(dim, config, input_pixels=64 * 64)


@pytest.mark.parametrize("quantizer_type", INDEX_TYPES)
def test_indices_decode_to_the_quantized_vectors(quantizer_type):
    quantizer = index_quantizer(quantizer_type, num_vectors=16, num_quantizers=2).eval()
    latent = torch.randn(2, 16, 3, 3)
    quantized, indices, loss = quantizer.quantize(latent)
    levels = 2 if quantizer_type == "rvq" else 1
    assert quantized.shape == (2, 16, 3, 3) and indices.shape == (2, 3, 3, levels) and loss.ndim == 0
    assert 0 <= indices.min() and indices.max() < quantizer.alphabet_size
    assert torch.allclose(quantizer.dequantize(indices), quantized, atol=1e-5)
    # eval mode: the head sees exactly what the receiver decodes from the indices
    features = torch.randn(2, 16, 3, 3)
    out = quantizer(features)
    assert torch.equal(out.features, quantizer.decode(quantizer.encode(features)))


@pytest.mark.parametrize(
    "quantizer_type,size,levels,bits",
    [("vq", 256, 1, 8), ("vq", 300, 1, 9), ("rvq", 256, 3, 24), ("lfq", 1024, 1, 10), ("fsq", 256, 1, 8)],
)
def test_fixed_bits_follow_one_rule(quantizer_type, size, levels, bits):
    # ceil(log2 alphabet) per level for every type: FSQ's 240 codes for K=256 cost 8 bits, not 7.9
    quantizer = index_quantizer(quantizer_type, dim=8, num_vectors=size, num_quantizers=levels)
    assert quantizer.fixed_bits_per_vector == bits


def test_fsq_alphabet_is_the_product_of_its_levels():
    assert index_quantizer("fsq", num_vectors=256).alphabet_size == 8 * 6 * 5
    quantizer = index_quantizer("fsq", fsq_levels="8,5,5,5")
    assert quantizer.alphabet_size == 1000 and quantizer.fixed_bits_per_vector == 10
    assert fsq_levels_for(256) == [8, 6, 5]


def test_fsq_level_of_two_is_refused_with_a_clear_error():
    with pytest.raises(UserError, match="at least 3"):
        parse_levels("8,2,5")
    with pytest.raises(UserError, match="at least 3"):
        build_quantizer(8, QuantizerConfig("fsq", settings=FSQSettings(fsq_levels="2,4")), 64)
    # derived levels never need the refused value
    assert all(min(fsq_levels_for(k)) >= 3 for k in range(2, 5000))


def test_lfq_needs_a_power_of_two():
    with pytest.raises(UserError, match="power of two"):
        index_quantizer("lfq", num_vectors=100)


def test_vit_rate_at_224_hand_computed():
    module = vq_module(QuantizerConfig(num_vectors=256), backbone="vit", image_size=224)
    module.bottleneck.code_histogram.fill_(5)  # uniform: the coder spends log2 256 = 8 bits a vector
    meter = RateMeter(module)
    indices = torch.zeros(2, 7, 7, 1, dtype=torch.long)
    indices[1] = 1  # this split uses two codes equally: 1 bit of entropy per vector
    meter.update(indices, [(300, 400), (224, 224)])
    report = meter.report()
    assert report["positions_per_image"] == 49 and report["alphabet_size"] == 256
    assert report["fixed_bits_per_image"] == 392  # 8 bits x 7 x 7
    assert report["entropy_bits_per_image"] == pytest.approx(49)
    assert report["coded_bits_per_image"] == pytest.approx(392)
    # a range coder at 8 bits a symbol: 49 bytes, plus the header and at most its final 32-bit word
    assert HEADER.size + 49 <= report["payload_bytes_mean"] <= HEADER.size + 49 + 4
    assert report["code_usage_on_split"] == pytest.approx(2 / 256, abs=1e-6)  # rounded to 6 places
    assert report["float32_bits_per_image"] == 49 * 768 * 32
    assert report["compression_vs_float16_fixed"] == pytest.approx(49 * 768 * 16 / 392)
    payload_bits = 8 * report["payload_bytes_mean"]
    assert report["compression_vs_float32_payload"] == pytest.approx(49 * 768 * 32 / payload_bits, rel=1e-5)
    # codebook, projection back, and the coder's model: one 32-bit count per code
    assert report["decoder_bytes"] == 4 * (256 * 64 + 64 * 768 + 768 + 256)
    assert report["amortised_bytes_per_image"] == pytest.approx(
        report["payload_bytes_mean"] + report["decoder_bytes"] / 10_000, abs=1e-6
    )
    assert report["head_bytes"] == 4 * (768 * 3 + 3)  # the 1x1 convolution to three classes


def test_entropy_and_coded_bits_by_hand():
    counts = torch.tensor([[3, 1, 0, 0]])
    assert entropy_bits(counts) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    assert entropy_bits(torch.tensor([[1, 1], [1, 1]])) == pytest.approx(2.0)  # two levels add
    # the coder's model is the training histogram plus one: (8, 4, 1, 1) / 14
    expected = -(3 * math.log2(8 / 14) + math.log2(4 / 14)) / 4
    assert coded_bits(counts, torch.tensor([[7, 3, 0, 0]])) == pytest.approx(expected)


def test_coded_bits_predict_the_range_coder(tmp_path):
    generator = torch.Generator().manual_seed(1)
    histogram = torch.randint(0, 100, (1, 64), generator=generator)
    indices = torch.multinomial(histogram[0].double() + 1, 2000, replacement=True, generator=generator)
    body = len(IndexCoder(histogram, b"K" * 8, (40, 50)).encode(indices.view(40, 50, 1), SIZE)) - HEADER.size
    predicted = coded_bits(count_codes(indices.view(-1, 1), 64), histogram) * 2000 / 8
    assert predicted <= body <= 1.02 * predicted + 4  # the coder's overhead: its final 32-bit word


SIZE = (375, 500)  # an image's (height, width), as payloads carry it


def payload_case(kind: str):
    """(indices, coder): indices drawn from the coder's histogram (range-coded), or made of its rarest
    codes (coded longer than a fixed-length code, so sent as one)."""
    generator = torch.Generator().manual_seed(0)
    histogram = torch.randint(1, 50, (2, 32), generator=generator) ** 2
    histogram[:, 7] = 0  # never seen in training
    if kind == "coded":
        indices = torch.stack([torch.multinomial(level.double(), 64, replacement=True, generator=generator)
                               for level in histogram], dim=-1).view(8, 8, 2)  # fmt: skip
    else:
        indices = torch.full((8, 8, 2), 7)
    return indices, IndexCoder(histogram, b"K" * 8, (8, 8))


@pytest.mark.parametrize("kind", ["coded", "fixed"])
def test_payload_round_trip_is_exact(kind):
    indices, coder = payload_case(kind)
    payload = coder.encode(indices, SIZE)
    decoded, size = coder.decode(payload)
    assert torch.equal(decoded, indices) and size == SIZE
    assert HEADER.size == 10
    fixed_length = HEADER.size + 8 * 8 * 2 * 5 // 8  # 5 bits for 32 codes, two levels, 64 positions
    assert bool(payload[0] & FIXED_LENGTH) == (kind == "fixed")
    assert len(payload) == fixed_length if kind == "fixed" else len(payload) < fixed_length


def test_no_payload_is_longer_than_a_fixed_length_code():
    generator = torch.Generator().manual_seed(3)
    for alphabet, levels, side in [(16, 1, 7), (64, 2, 7), (300, 1, 14), (2, 1, 3)]:
        histogram = torch.randint(0, 5, (levels, alphabet), generator=generator) ** 3  # skewed
        coder = IndexCoder(histogram, b"K" * 8, (side, side))
        bits = math.ceil(math.log2(alphabet))
        for _ in range(20):  # uniform draws: many are unlikely under the skewed histogram
            indices = torch.randint(0, alphabet, (side, side, levels), generator=generator)
            payload = coder.encode(indices, SIZE)
            assert len(payload) <= HEADER.size + math.ceil(side * side * levels * bits / 8)
            assert torch.equal(coder.decode(payload)[0], indices)


def test_small_payloads_stay_within_the_coder_cross_entropy():
    """Body <= cross-entropy x 1.02 + 4 bytes at the sizes people send (7x7 to 28x28 grids), and never
    above the fixed-length code."""
    generator = torch.Generator().manual_seed(2)
    for side, alphabet in [(7, 16), (7, 64), (7, 256), (14, 512), (28, 512)]:
        histogram = torch.randint(0, 200, (1, alphabet), generator=generator) ** 2
        coder = IndexCoder(histogram, b"K" * 8, (side, side))
        fixed = math.ceil(side * side * math.ceil(math.log2(alphabet)) / 8)
        for _ in range(5):
            indices = torch.multinomial(histogram[0].double() + 1, side * side, replacement=True,
                                        generator=generator)  # fmt: skip
            body = len(coder.encode(indices.view(side, side, 1), SIZE)) - HEADER.size
            cross_entropy = coded_bits(count_codes(indices.view(-1, 1), alphabet), histogram) * side**2 / 8
            assert min(cross_entropy, fixed) <= body <= min(1.02 * cross_entropy + 4, fixed)


@pytest.mark.parametrize("kind", ["coded", "fixed"])
@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda p: p[:-4], "corrupt"),
        (lambda p: p[:-1], "corrupt"),
        (lambda p: p[:-8] + bytes([p[-8] ^ 0x10]) + p[-7:], "corrupt"),
        (lambda p: p[:2] + bytes([p[2] ^ 0x01]) + p[3:], "check mismatch"),
        (lambda p: p[:7] + bytes([p[7] ^ 0x01]) + p[8:], "check mismatch"),  # the image's height
        (lambda p: bytes([9]) + p[1:], "is not an embeddings_squeeze payload; pass a .esq file"),
        (
            lambda p: bytes([2]) + p[1:],
            "written by an earlier release of embeddings_squeeze \\(payload format 2\\)",
        ),
        (lambda p: p[:1] + bytes([p[1] ^ 0xFF]) + p[2:], "another checkpoint"),
        (lambda p: b"GIF89a" + p[6:], "not an embeddings_squeeze payload"),
        (lambda p: p[:5], "too short"),
    ],
)
def test_damaged_payloads_never_decode(damage, message, kind):
    indices, coder = payload_case(kind)
    payload = damage(coder.encode(indices, SIZE))
    with pytest.raises(UserError, match=message):
        coder.decode(payload)


def test_payload_from_a_checkpoint_with_the_same_tag_is_refused():
    """Fingerprints that share their first byte (1 in 256): the check still refuses."""
    indices, coder = payload_case("coded")
    other = IndexCoder(torch.ones(2, 32, dtype=torch.long), b"K" + b"other..", (8, 8))
    with pytest.raises(UserError, match="corrupt or from another checkpoint"):
        other.decode(coder.encode(indices, SIZE))


@pytest.mark.parametrize("quantizer_type", INDEX_TYPES)
def test_each_quantizer_end_to_end(quantizer_type, pet_root, tmp_path, trained):
    args = parse(
        squeeze, *TINY, "--data_path", pet_root, "--output_dir", tmp_path / "runs", "--epochs", 1,
        "--quantizer_type", quantizer_type, "--num_vectors", 16, "--num_quantizers", 2,
    )  # fmt: skip
    checkpoint = squeeze.main(args)
    rate = json.loads((checkpoint.parent / "rate.json").read_text())
    assert rate["split"] == "val" and rate["images"] == 2 and rate["quantizer_type"] == quantizer_type
    levels = 2 if quantizer_type == "rvq" else 1
    # 16 codes (FSQ: levels 4 x 4) cost 4 bits per level at each of the 4x4 grid positions
    assert rate["fixed_bits_per_image"] == 4 * levels * 16 and rate["alphabet_size"] == 16
    module = load_module(checkpoint, "squeezed")
    assert (
        module.bottleneck.code_histogram.sum() == 16 * module.bottleneck.levels * 14
    )  # 14 train images, 4x4 grid positions each

    summary = visualize_summary(
        trained["baseline"], checkpoint, pet_root, tmp_path / "vis", "--n_best", 1, "--n_worst", 1
    )
    rate = summary["rate"]
    assert rate["quantizer_type"] == quantizer_type and rate["images"] == 6
    levels = module.bottleneck.levels
    # a quantizer that sends one code for every position carries no information
    assert rate["code_usage_on_split"] * rate["alphabet_size"] * levels >= 2 * levels
    assert (tmp_path / "vis" / "best_results_test.png").is_file()

    module, files = encode_and_decode_files(checkpoint, pet_root, tmp_path)
    coder = payload_coder(module)
    for pixels, payload, labels in files:
        direct_indices = module.bottleneck.encode(module.backbone.features(pixels[None]))
        assert torch.equal(coder.decode(payload)[0], direct_indices[0])
        assert torch.equal(labels, forward_mask(module, pixels, labels.shape))


def test_quantizer_stays_float32_under_bf16_autocast():
    module = vq_module(backbone="vit").train()
    features = torch.randn(2, 768, 2, 2)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        latent = module.bottleneck.project_in(features)  # what an unprotected bottleneck would get
        reconstructed, loss, _, _ = module.bottleneck(features)
    assert latent.dtype == torch.bfloat16
    assert reconstructed.dtype == torch.float32 and loss.dtype == torch.float32
    assert module.bottleneck.quantizer.codebook.dtype == torch.float32
