#!/usr/bin/env python3
"""JPEG decoding fixtures: small JPEGs made with Pillow, each with the RGB Pillow decodes.

Run from the repository root:

    /opt/oracle/bin/python scripts/make_jpeg_fixtures.py

Rewrites tests/fixtures/jpeg/ from scratch:

    NAME.jpg                 a JPEG written by Pillow (libjpeg-turbo), sometimes edited below
    NAME.jpg.rgb.safetensors Pillow's Image.open(NAME.jpg).convert("RGB"): one U8 tensor
                             `rgb` of shape [H, W, 3]
    refused/NAME.jpg         files the decoder must refuse with an error (no reference)

tests/jpeg_decode.rs requires pgpo's decoder to reproduce every reference byte for byte.
Together the files cover baseline 4:2:0, 4:2:2 and 4:4:4, greyscale, progressive (colour
and grey, with and without restart markers), optimized Huffman tables, restart intervals,
sizes that are not multiples of 8 or 16 (down to 1x1 and components at most 2 samples wide,
where libjpeg drops to box upsampling), heavy quantization that drives colours out of
range, and a few paths Pillow's encoder cannot reach directly, made by editing its output:

  * sampling_440 / sampling_411 / sampling_141: a 4:2:2 or 4:2:0 file whose frame header is
    relabelled 1x2 / 4x1 / 1x4 luma sampling with the dimensions changed to keep the MCU
    count, so the same entropy data decodes as a valid (scrambled-looking) image through
    libjpeg's h1v2 fancy upsampler and its integer-ratio box upsampler;
  * adobe_rgb: a 4:4:4 file without JFIF marker and with an Adobe APP14 marker of transform
    0, which makes libjpeg read the three components as RGB (no colour conversion);
  * progressive_incomplete: a progressive file cut after its third scan, with EOI appended,
    which libjpeg decodes with block smoothing of the missing coefficients;
  * restart_damaged: restart markers renumbered, which libjpeg resynchronizes around.

refused/ holds a truncated file (Pillow: "image file is truncated"), a CMYK file, and a
baseline file relabelled SOF9 (arithmetic coding), which the decoder refuses at its frame
header.

Needs Pillow and numpy only. Content is seeded numpy noise, gradients and shapes, and
Pillow's encoder is deterministic, so reruns write identical files.
"""

import io
import json
import shutil
import struct
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, features

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "jpeg"
rng = np.random.default_rng(20240607)


def content(kind, w, h):
    """An HxWx3 uint8 picture: smooth gradient, photo-like blocks and edges, or noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if kind == "gradient":
        a = np.stack([xx * 255 / max(w - 1, 1), yy * 255 / max(h - 1, 1), (xx + yy) * 127 / max(w + h - 2, 1)], -1)
    elif kind == "noise":
        a = rng.integers(0, 256, (h, w, 3)).astype(np.float64)
    else:
        blocks = np.kron(rng.normal(0, 1, (h // 8 + 2, w // 8 + 2, 3)), np.ones((8, 8, 1)))[:h, :w]
        a = 128 + 60 * blocks + 30 * np.sin(xx[..., None] / 7.0 + np.arange(3)) + 20 * np.cos(yy[..., None] / 5.0)
        a += rng.normal(0, 10, (h, w, 3))
        a[(xx.astype(int) // 13 + yy.astype(int) // 9) % 5 == 0] = [250, 10, 240]
    return np.clip(a, 0, 255).astype(np.uint8)


def rgb_image(kind, w, h):
    return Image.fromarray(content(kind, w, h), "RGB")


def grey_image(kind, w, h):
    return Image.fromarray(content(kind, w, h)[..., 1], "L")


def encode(im, **options):
    b = io.BytesIO()
    im.save(b, "JPEG", **options)
    return b.getvalue()


def segments(data):
    """[(marker, bytes)] of the header segments, the last one being SOS and everything after."""
    out, i = [], 2
    while True:
        m = data[i + 1]
        if m == 0xDA:
            return out + [(m, data[i:])]
        n = struct.unpack(">H", data[i + 2:i + 4])[0]
        out.append((m, data[i:i + 2 + n]))
        i += 2 + n


def join(segs):
    return b"\xff\xd8" + b"".join(s for _, s in segs)


def relabel_luma(data, h, v, width, height):
    """Rewrite the SOF0 header: luma sampling h x v and the given image size."""
    segs = segments(data)
    out = []
    for m, s in segs:
        if m == 0xC0:
            s = bytearray(s)
            s[5:9] = struct.pack(">HH", height, width)
            s[11] = (h << 4) | v
            s = bytes(s)
        out.append((m, s))
    return join(out)


def write_safetensors(path, rgb):
    """One U8 tensor `rgb` [H, W, 3] in the safetensors format (8-byte header size, JSON)."""
    payload = rgb.tobytes()
    header = {
        "__metadata__": {"source": "PIL.Image.open(jpg).convert('RGB')", "pillow": PIL.__version__, "libjpeg_turbo": str(features.version("libjpeg_turbo"))},
        "rgb": {"dtype": "U8", "shape": list(rgb.shape), "data_offsets": [0, len(payload)]},
    }
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + payload)


def pillow_rgb(data):
    im = Image.open(io.BytesIO(data)).convert("RGB")
    return np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, 3)


def fixture(name, data):
    (OUT / f"{name}.jpg").write_bytes(data)
    write_safetensors(OUT / f"{name}.jpg.rgb.safetensors", pillow_rgb(data))


def refused(name, data):
    (OUT / "refused" / f"{name}.jpg").write_bytes(data)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "refused").mkdir(parents=True)

    photo = rgb_image("photo", 61, 37)
    fixture("baseline_420_61x37", encode(photo, quality=75))
    fixture("baseline_422_45x29", encode(rgb_image("photo", 45, 29), quality=85, subsampling=1))
    fixture("baseline_444_q100_33x17", encode(rgb_image("noise", 33, 17), quality=100, subsampling=0))
    fixture("baseline_420_q10_saturated_40x30", encode(rgb_image("photo", 40, 30), quality=10))
    fixture("gradient_420_q90_64x48", encode(rgb_image("gradient", 64, 48), quality=90))
    fixture("grey_47x31", encode(grey_image("photo", 47, 31), quality=80))
    fixture("tiny_1x1", encode(rgb_image("noise", 1, 1), quality=90))
    fixture("tiny_3x3_420", encode(rgb_image("noise", 3, 3), quality=90))
    fixture("tiny_4x7_422", encode(rgb_image("photo", 4, 7), quality=90, subsampling=1))
    fixture("progressive_420_70x45", encode(rgb_image("photo", 70, 45), quality=80, progressive=True))
    fixture("progressive_444_restart_35x27", encode(rgb_image("noise", 35, 27), quality=70, subsampling=0, progressive=True, restart_marker_rows=1))
    fixture("progressive_grey_41x23", encode(grey_image("gradient", 41, 23), quality=85, progressive=True))
    fixture("optimized_420_50x50", encode(rgb_image("photo", 50, 50), quality=80, optimize=True))
    fixture("restart_blocks_420_40x24", encode(rgb_image("photo", 40, 24), quality=75, restart_marker_blocks=1))
    fixture("restart_rows_grey_37x19", encode(grey_image("noise", 37, 19), quality=60, restart_marker_rows=2))

    # Sampling factors Pillow does not write: same MCU count, new luma factors and size.
    src422 = encode(rgb_image("photo", 48, 24), quality=85, subsampling=1)  # Y 2x1: 3 x 3 MCUs
    fixture("sampling_440_24x48", relabel_luma(src422, 1, 2, 24, 48))  # Y 1x2: 3 x 3 MCUs
    src420 = encode(rgb_image("photo", 32, 32), quality=85, subsampling=2)  # Y 2x2: 2 x 2 MCUs
    fixture("sampling_411_64x16", relabel_luma(src420, 4, 1, 64, 16))  # Y 4x1: 2 x 2 MCUs
    fixture("sampling_141_16x64", relabel_luma(src420, 1, 4, 16, 64))  # Y 1x4: 2 x 2 MCUs

    # Adobe transform 0: the components are R, G, B.
    segs = [s for s in segments(encode(rgb_image("gradient", 30, 20), quality=90, subsampling=0)) if s[0] != 0xE0]
    adobe = b"Adobe" + bytes([0, 100, 0, 0, 0, 0, 0])
    fixture("adobe_rgb_30x20", join([(0xEE, b"\xff\xee" + struct.pack(">H", len(adobe) + 2) + adobe)] + segs))

    # A progressive file cut after three scans: block smoothing fills the missing AC terms.
    prog = encode(rgb_image("photo", 56, 40), quality=85, progressive=True)
    scans = [i for i in range(len(prog) - 1) if prog[i] == 0xFF and prog[i + 1] == 0xDA]
    fixture("progressive_incomplete_56x40", prog[:scans[3]] + b"\xff\xd9")

    # Every fourth restart marker renumbered: libjpeg resynchronizes (and loses some MCUs).
    rst = bytearray(encode(rgb_image("photo", 48, 32), quality=80, restart_marker_blocks=2))
    seen = 0
    for i in range(rst.index(b"\xff\xda"), len(rst) - 1):
        if rst[i] == 0xFF and 0xD0 <= rst[i + 1] <= 0xD7:
            seen += 1
            if seen % 4 == 2:
                rst[i + 1] = 0xD0 + (rst[i + 1] - 0xD0 + 3) % 8
    fixture("restart_damaged_48x32", bytes(rst))

    whole = encode(rgb_image("photo", 64, 40), quality=85)
    truncated = whole[: len(whole) * 2 // 3]
    try:
        Image.open(io.BytesIO(truncated)).convert("RGB")
        raise SystemExit("Pillow decoded the truncated fixture; pick another cut")
    except OSError:
        pass
    refused("truncated", truncated)
    refused("cmyk", encode(Image.fromarray(rng.integers(0, 256, (16, 24, 4)).astype(np.uint8), "CMYK"), quality=90))
    sof9 = bytearray(encode(rgb_image("photo", 24, 16), quality=85))
    sof9[sof9.index(b"\xff\xc0") + 1] = 0xC9
    refused("arithmetic_sof9", bytes(sof9))

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {len(list(OUT.rglob('*.jpg')))} JPEGs, {total} bytes, to {OUT}")


if __name__ == "__main__":
    main()
