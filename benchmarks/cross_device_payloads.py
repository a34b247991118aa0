"""Payloads across devices: encode on one device, decode on the other, compare the masks.

    python benchmarks/cross_device_payloads.py --checkpoint last.ckpt --output_dir out IMAGE ...

Encodes every image on the CPU and on the second device (--second, default cuda), decodes each
set of payloads on both devices, and reports how many payloads are byte-identical across devices
and how many decoded masks are identical whichever device decoded them. Writes
<output_dir>/cross_device.json. `--second cpu` runs the same comparison on a machine without a GPU.
"""

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from embeddings_squeeze import decode, encode

ACCELERATOR = {"cpu": "cpu", "cuda": "gpu"}


def masks_of(paths: list[Path]) -> dict[str, np.ndarray]:
    result = {}
    for path in paths:
        with Image.open(path) as mask:
            result[path.stem] = np.array(mask)
    return result


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--second", default="cuda", choices=tuple(ACCELERATOR))
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    out = Path(args.output_dir)
    devices = ("cpu", args.second)
    payloads, masks = {}, {}
    for device in devices:
        argv = ["--checkpoint", args.checkpoint, *args.images, "-o", str(out / f"esq_{device}")]
        payloads[device] = encode.main(
            encode.get_args_parser().parse_args([*argv, "--accelerator", ACCELERATOR[device]])
        )
    for encoded_on in devices:
        for decoded_on in devices:
            argv = ["--checkpoint", args.checkpoint, *map(str, payloads[encoded_on])]
            argv += [
                "-o",
                str(out / f"png_{encoded_on}_on_{decoded_on}"),
                "--accelerator",
                ACCELERATOR[decoded_on],
            ]
            masks[encoded_on, decoded_on] = masks_of(decode.main(decode.get_args_parser().parse_args(argv)))
    first, second = devices
    same_bytes = sum(a.read_bytes() == b.read_bytes() for a, b in zip(payloads[first], payloads[second]))
    report = {
        "images": len(args.images),
        "devices": devices,
        "payloads_identical_across_encoders": same_bytes,
    }
    for encoded_on in devices:
        here, there = masks[encoded_on, first], masks[encoded_on, second]
        report[f"{encoded_on}_payloads_same_mask_on_both_decoders"] = sum(
            np.array_equal(here[name], there[name]) for name in here
        )
    (out / "cross_device.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
