#!/usr/bin/env python3
"""Reference fixtures for the Qwen2.5-VL re-implementation, produced by Hugging Face transformers.

Run from the repository root:

    /opt/oracle/bin/python scripts/make_hf_fixtures.py
        Rebuilds tests/fixtures/qwen/ from scratch: three tiny random checkpoints
        (base, tied, flat_bf16), one <case>.safetensors per case and cases.json.

    /opt/oracle/bin/python scripts/make_hf_fixtures.py --generation
        Rewrites only the greedy-generation fixtures (generate_<case>.safetensors) from the
        checkpoints and cases already in tests/fixtures/qwen/ (main() also writes them).

    /opt/oracle/bin/python scripts/make_hf_fixtures.py --processor
        Rewrites only tests/fixtures/qwen/processor/: a small byte-level BPE tokenizer with
        Qwen2-VL's special tokens, the Qwen2-VL chat template, a PIL image processor config,
        a few PNG and JPEG images of odd sizes, and for each image the output of transformers'
        Qwen2_5_VLProcessor (PIL backend) on a templated one-turn prompt (main() also writes them).

    /opt/oracle/bin/python scripts/make_hf_fixtures.py --tvd
        Rewrites only the `pgpo tvd` fixtures (tvd_shared_prompt*.safetensors) from the base
        checkpoint: three prompt + response rows, two of which share their prompt ids (and
        response) but not their image, with transformers' clean and blind logits (main() also
        writes them).

    /opt/oracle/bin/python scripts/make_hf_fixtures.py --verify-saved DIR --case CASE
        Loads the checkpoint in DIR with transformers, runs CASE's clean forward and exits 0
        when max |Δlogits| over valid positions is <= 1e-4 against the stored logits
        (proves transformers can read what the Rust code writes).

Needs torch, transformers, safetensors, numpy and pillow. Everything runs on the CPU in float32 with eager attention and fixed seeds, so reruns write
the same tensors.
"""

import argparse
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.utils import logging as hf_logging

torch.set_num_threads(2)
hf_logging.disable_progress_bar()  # keep the printed report readable

# Resolved from this file, so the script also works when started from another directory.
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "qwen"
VERIFY_TOL = 1e-4

# Special token ids, placed at the top level of the config as transformers expects.
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 120, 121, 122, 123
# Ordinary text tokens avoid the specials and PAD_ID: the embedding is built with
# padding_idx=PAD_ID, whose gradient row torch always zeroes, so PAD_ID only ever sits at
# masked (gradient-free) positions and a re-implementation need not model padding_idx.
TEXT_LO, TEXT_HI = 3, 120  # [lo, hi)
IGNORE = -100

TEXT = dict(
    vocab_size=128,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=2,  # head_dim 16
    rms_norm_eps=1e-6,
    hidden_act="silu",
    max_position_embeddings=512,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
)
ROPE_THETA = 10000.0
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 8
VISION = dict(
    depth=2,
    hidden_size=32,
    intermediate_size=48,
    num_heads=2,
    in_channels=3,
    temporal_patch_size=2,
    spatial_merge_size=2,
    out_hidden_size=32,  # = text hidden size
    hidden_act="silu",
    tokens_per_second=2,
)

# name -> (seed, text overrides, vision overrides, tie_word_embeddings)
CHECKPOINTS = {
    # vit_merger_window_size = 16 // 2 // 4 = 2 merged units; GQA (2 query heads, 1 kv head).
    "base": (1, dict(num_key_value_heads=1), dict(patch_size=4, window_size=16, fullatt_block_indexes=[1]), False),
    # windows of one merged unit (8 // 2 // 4 = 1), no GQA, tied embeddings, full attention first.
    "tied": (2, dict(num_key_value_heads=2), dict(patch_size=4, window_size=8, fullatt_block_indexes=[0]), True),
    # the published patch size (1176 values per patch); 56 // 2 // 14 = 2 merged units.
    "flat_bf16": (3, dict(num_key_value_heads=1), dict(patch_size=14, window_size=56, fullatt_block_indexes=[1]), False),
}

# Each sequence is a list of segments: an int n is n random text tokens, a tuple (t, h, w) is
# one image of that grid (in patches), written as <vision_start> pad*(h*w/4) <vision_end>.
CASES = [
    dict(case="padded_batch", checkpoint="base", seed=11,
         what="batch 2, left padded, one image each ([1,4,6] and [1,6,4]), lengths 24 and 31",
         seqs=[[5, (1, 4, 6), 11], [9, (1, 6, 4), 14]]),
    dict(case="two_images", checkpoint="base", seed=12,
         what="batch 1, two images ([1,4,4] and [1,8,6]) with text between and after",
         seqs=[[4, (1, 4, 4), 5, (1, 8, 6), 8]]),
    dict(case="odd_windows", checkpoint="base", seed=13,
         what="batch 1, one image [1,10,6]: merged grid 5x3 is not divided by the 2x2 windows",
         seqs=[[3, (1, 10, 6), 9]]),
    dict(case="tied_gqa_off", checkpoint="tied", seed=14,
         what="tied embeddings, no GQA, one-unit windows; batch 2 left padded ([1,6,6] and [1,4,8])",
         seqs=[[4, (1, 6, 6), 10], [6, (1, 4, 8), 14]]),
    dict(case="flat_bf16", checkpoint="flat_bf16", seed=15,
         what="flat published-style config, legacy names, bf16 shards; one image [1,4,6] (patch_dim 1176)",
         seqs=[[5, (1, 4, 6), 9]]),
    dict(case="text_only", checkpoint="base", seed=16,
         what="batch 2 left padded, no image; labels on the second half of each sequence",
         seqs=[[14], [20]]),
]


# ----------------------------------------------------------------------------- checkpoints

def make_config(name):
    _, text_over, vision_over, tie = CHECKPOINTS[name]
    text = dict(TEXT, **text_over)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": MROPE_SECTION}
    return Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(VISION, **vision_over),
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        tie_word_embeddings=tie,
        attn_implementation="eager",
    )


@torch.no_grad()
def init_params(model, seed):
    """Re-initialise every parameter with a wide spread so that mistakes show in the logits.

    The default init (std 0.02) gives near-uniform attention and logits ~0, which would hide
    position, mask and weight-layout bugs."""
    g = torch.Generator().manual_seed(seed)
    # named_parameters() yields a tied tensor once, under the embedding's name.
    for name, p in model.named_parameters():
        if p.ndim == 1 and name.endswith(".weight"):  # every 1-D weight is an RMSNorm scale
            p.copy_(torch.rand(p.shape, generator=g) + 0.5)  # uniform(0.5, 1.5)
        elif name.endswith(".bias"):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        elif "embed_tokens" in name:
            # also the lm_head when tied: std 0.4 keeps tied logits near std ~2-3
            p.copy_(torch.randn(p.shape, generator=g) * 0.4)
        else:
            fan_in = math.prod(p.shape[1:])
            gain = 1.0
            if name.endswith(("q_proj.weight", "k_proj.weight", "attn.qkv.weight")):
                gain = 1.5  # sharper attention, so masking / rope errors move the output
            elif name == "lm_head.weight":
                gain = 2.0  # logits of std ~2: informative, not saturated
            p.copy_(torch.randn(p.shape, generator=g) * (gain / math.sqrt(fan_in)))


def build_model(name):
    seed = CHECKPOINTS[name][0]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(make_config(name)).float()
    init_params(model, seed)
    if name == "flat_bf16":
        # The references use the bf16-rounded weights widened back to f32.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).to(torch.float32))
    return model.eval()


def legacy_name(hf_name):
    """transformers-5 module path -> tensor name used by published checkpoints."""
    if hf_name.startswith("model.language_model."):
        return "model." + hf_name[len("model.language_model."):]
    if hf_name.startswith("model.visual."):
        return "visual." + hf_name[len("model.visual."):]
    return hf_name  # lm_head.weight


def read_safetensors_dir(d):
    tensors = {}
    for f in sorted(Path(d).glob("*.safetensors")):
        tensors.update(load_file(f))
    return tensors


def stored_name_map(model, stored_keys):
    """Map each parameter of `model` to its name in the checkpoint files (`stored_keys`).

    Tries the module path itself and the legacy name, and asserts that every parameter
    and every stored tensor is accounted for exactly once."""
    mapping = {}
    for name, _ in model.named_parameters():
        hits = [c for c in (name, legacy_name(name)) if c in stored_keys]
        assert len(set(hits)) == 1, f"no unique stored tensor for {name}: {hits}"
        mapping[name] = hits[0]
    assert set(mapping.values()) == set(stored_keys), (
        f"stored tensors without a parameter: {set(stored_keys) - set(mapping.values())}")
    return mapping


def check_same_weights(model, stored, mapping, widen=False):
    for name, p in model.named_parameters():
        t = stored[mapping[name]]
        t = t.float() if widen else t
        assert t.dtype == p.dtype and torch.equal(t, p.detach()), f"stored {mapping[name]} differs"


def save_flat_bf16(model, d):
    """Write the checkpoint the way published Qwen2.5-VL repos are: flat config, legacy
    names, bf16, two shards plus an index."""
    cfg = model.config
    text, vision = cfg.text_config, cfg.vision_config
    flat = {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "torch_dtype": "bfloat16",
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": ROPE_THETA,
        "hidden_act": text.hidden_act,
        "max_position_embeddings": text.max_position_embeddings,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "vision_start_token_id": VISION_START,
        "vision_end_token_id": VISION_END,
        "image_token_id": IMAGE_PAD,
        "video_token_id": VIDEO_PAD,
        "vision_config": {
            "depth": vision.depth,
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_heads": vision.num_heads,
            "in_chans": vision.in_channels,  # published spelling
            "patch_size": vision.patch_size,
            "spatial_merge_size": vision.spatial_merge_size,
            "temporal_patch_size": vision.temporal_patch_size,
            "window_size": vision.window_size,
            "out_hidden_size": vision.out_hidden_size,
            "fullatt_block_indexes": list(vision.fullatt_block_indexes),
            "hidden_act": vision.hidden_act,
            "tokens_per_second": vision.tokens_per_second,
        },
    }
    d.mkdir(parents=True)
    (d / "config.json").write_text(json.dumps(flat, indent=2) + "\n")

    tensors = {legacy_name(n): p.detach().to(torch.bfloat16).contiguous() for n, p in model.named_parameters()}
    # Split in module order at half of the bytes, like sharded published checkpoints.
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    files = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    shards, weight_map, running = ({}, {}), {}, 0
    for name, t in tensors.items():
        k = 0 if running < total // 2 else 1
        running += t.numel() * t.element_size()
        shards[k][name] = t
        weight_map[name] = files[k]
    for k in range(2):
        assert shards[k], "both shards must hold tensors"
        save_file(shards[k], d / files[k], metadata={"format": "pt"})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def load_hf(d):
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(
        d, dtype=torch.float32, attn_implementation="eager").eval()


# ----------------------------------------------------------------------------- inputs

def build_inputs(spec, patch_dim):
    """Token ids, masks, labels and random patches for one case (left padding)."""
    g = torch.Generator().manual_seed(spec["seed"])
    seqs, grids = [], []
    for segs in spec["seqs"]:
        ids = []
        for seg in segs:
            if isinstance(seg, int):
                ids += torch.randint(TEXT_LO, TEXT_HI, (seg,), generator=g).tolist()
            else:
                t, h, w = seg
                assert t == 1 and h % 2 == 0 and w % 2 == 0
                ids += [VISION_START] + [IMAGE_PAD] * (h * w // 4) + [VISION_END]
                grids.append(list(seg))
        seqs.append(ids)

    B, T = len(seqs), max(len(s) for s in seqs)
    input_ids = torch.full((B, T), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros((B, T), dtype=torch.long)
    labels = torch.full((B, T), IGNORE, dtype=torch.long)
    for b, ids in enumerate(seqs):
        off = T - len(ids)
        input_ids[b, off:] = torch.tensor(ids)
        attention_mask[b, off:] = 1
        # Prompt = everything up to and including the last <vision_end>; text-only: first half.
        ends = [i for i, x in enumerate(ids) if x == VISION_END]
        start = ends[-1] + 1 if ends else len(ids) // 2
        labels[b, off + start:] = input_ids[b, off + start:]

    out = dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        labels=labels,
        mm_token_type_ids=(input_ids == IMAGE_PAD).long(),
    )
    if grids:
        grid = torch.tensor(grids, dtype=torch.long)
        n = int(grid.prod(-1).sum())
        out["pixel_values"] = torch.rand((n, patch_dim), generator=g) * 3.0 - 1.5  # [-1.5, 1.5)
        out["image_grid_thw"] = grid
    return out


def patch_dim(config):
    v = config.vision_config
    return v.in_channels * v.temporal_patch_size * v.patch_size ** 2


def rope_positions(model, inp):
    # transformers 5 builds 3-D positions only when it is handed mm_token_type_ids (or
    # explicit position_ids) and otherwise silently falls back to 1-D ones; we compute them
    # once here and always pass position_ids= explicitly. For text-only input an all-zero
    # mm_token_type_ids with image_grid_thw=None works: one text group per row, so t = h = w
    # = 0, 1, 2, ... over the valid tokens. Padding positions get 0.
    pos, _ = model.model.get_rope_index(
        inp["input_ids"],
        mm_token_type_ids=inp["mm_token_type_ids"],
        image_grid_thw=inp.get("image_grid_thw"),
        attention_mask=inp["attention_mask"],
    )
    return pos


def clean_forward(model, inp, position_ids, labels=None):
    return model(
        input_ids=inp["input_ids"],
        attention_mask=inp["attention_mask"],
        pixel_values=inp.get("pixel_values"),
        image_grid_thw=inp.get("image_grid_thw"),
        position_ids=position_ids,
        labels=labels,
    )


# ----------------------------------------------------------------------------- cases

def make_case(spec, model, stored_names):
    inp = build_inputs(spec, patch_dim(model.config))
    ids, mask = inp["input_ids"], inp["attention_mask"]
    pos = rope_positions(model, inp)
    if "image_grid_thw" not in inp:
        expect = (mask.cumsum(-1) - 1).clamp(min=0) * mask
        assert torch.equal(pos, expect.expand(3, -1, -1)), "text-only rope index is not 1-D"

    # Clean pass with loss and gradients of every parameter.
    model.zero_grad(set_to_none=True)
    out = clean_forward(model, inp, pos, labels=inp["labels"])
    out.loss.backward()
    logits = out.logits.detach()
    assert torch.isfinite(logits).all(), "non-finite logits"

    with torch.no_grad():
        # Blind pass: image pads masked (plus padding), same positions, no pixels.
        blind_mask = mask * (ids != IMAGE_PAD)
        blind = model(input_ids=ids, attention_mask=blind_mask, position_ids=pos).logits
        marker_mask = blind_mask * (ids != VISION_START) * (ids != VISION_END)
        blind_marker = model(input_ids=ids, attention_mask=marker_mask, position_ids=pos).logits
    assert torch.isfinite(blind).all() and torch.isfinite(blind_marker).all()

    tensors = dict(
        input_ids=ids,
        attention_mask=mask,
        labels=inp["labels"],
        mm_token_type_ids=inp["mm_token_type_ids"],
        position_ids=pos.contiguous(),
        logits=logits,
        blind_logits=blind,
        blind_marker_logits=blind_marker,
        loss=out.loss.detach().reshape(1),
        valid=mask.clone(),
        blind_valid=blind_mask,
    )
    if "pixel_values" in inp:
        tensors["pixel_values"] = inp["pixel_values"]
        tensors["image_grid_thw"] = inp["image_grid_thw"]
    for name, p in model.named_parameters():
        if p.grad is None:
            # Without an image the vision tower is not run: its gradient is exactly zero.
            assert "pixel_values" not in inp and name.startswith("model.visual."), f"no gradient for {name}"
            grad = torch.zeros_like(p)
        else:
            grad = p.grad.detach().clone()
        tensors["grad." + stored_names[name]] = grad
    assert len([k for k in tensors if k.startswith("grad.")]) == len(set(stored_names.values()))

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, OUT / f"{spec['case']}.safetensors", metadata={"format": "pt"})

    v = mask.bool()
    return dict(std=logits[v].std().item(), max=logits[v].abs().max().item(), loss=out.loss.item())


# ----------------------------------------------------------------------------- generation

# Greedy generate() over left-padded batches with images, and over the bf16 checkpoint (loaded
# as float32, as pgpo holds it): (case, new tokens).
GENERATION = [("padded_batch", 12), ("tied_gqa_off", 12), ("text_only", 10), ("flat_bf16", 12)]


@torch.no_grad()
def make_generation(case, new_tokens):
    """transformers' greedy generate with the KV cache. A first run without a stop token picks
    as EOS a token that one row emits part-way and another row does not emit at all, so the
    fixture covers a sequence stopping early (pad after it) while another runs on (a batch of
    one stops a few tokens before the limit)."""
    data = load_file(OUT / f"{case}.safetensors")
    spec = next(s for s in CASES if s["case"] == case)
    model = load_hf(OUT / spec["checkpoint"])
    inp = {k: data[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw", "mm_token_type_ids") if k in data}
    if "image_grid_thw" not in inp:
        inp.pop("mm_token_type_ids")  # text only: transformers uses 1-D positions, as pgpo does

    def run(eos):
        model.model.rope_deltas = None
        return model.generate(**inp, do_sample=False, max_new_tokens=new_tokens, eos_token_id=eos,
                              pad_token_id=PAD_ID, output_logits=True, return_dict_in_generate=True)

    T = inp["input_ids"].shape[1]
    first = run(None).sequences[:, T:]
    eos = None
    B = first.shape[0]
    rows = first.tolist()
    # With one row, the latest such token, so that most steps run before it stops.
    for step in (range(2, new_tokens - 2) if B > 1 else reversed(range(2, new_tokens - 2))):
        for r in range(B):
            tok = rows[r][step]
            if eos is None and tok not in rows[r][:step] and all(tok not in rows[b] for b in range(B) if b != r):
                eos = tok
    assert eos is not None, f"{case}: no token stops one row and not the others"
    out = run(eos)
    logits = torch.stack(out.logits, dim=1)  # [B, steps, V]; rows past their EOS are junk
    save_file({
        "sequences": out.sequences.contiguous(),
        "logits": logits.contiguous(),
        "eos_token_id": torch.tensor([eos]),
        "pad_token_id": torch.tensor([PAD_ID]),
    }, OUT / f"generate_{case}.safetensors", metadata={"format": "pt"})
    print(f"generate {case}: eos {eos}, sequences {list(out.sequences.shape)}:")
    for row in out.sequences[:, T:].tolist():
        print(f"    {row}")


def make_generations():
    for case, n in GENERATION:
        make_generation(case, n)


# ----------------------------------------------------------------------------- processor

PROCESSOR = OUT / "processor"
REPO = Path(__file__).resolve().parent.parent
# The same file pgpo falls back to when a checkpoint has no template of its own.
TEMPLATE = (REPO / "src" / "model" / "qwen2_vl_chat_template.jinja").read_text()
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>"]
CORPUS = [
    "How many red circles are there? Answer with a number.",
    "What colour is the shape left of the square? The triangle is blue.",
    "Is there a triangle in the picture? Yes, there is one green triangle.",
    "You are a helpful assistant. Describe this image in one sentence.",
    "There are 3 red circles, 2 blue squares and 1 yellow star on the grid.",
]
# (file, size (w, h), what); pixels = 28*28*4 .. 28*28*16.
IMAGES = [
    ("odd.png", (97, 61), "RGB PNG of odd size"),
    ("odd.jpg", (123, 77), "JPEG of odd size"),
    ("small.png", (20, 33), "below min_pixels: scaled up"),
    ("large.jpg", (300, 251), "above max_pixels: scaled down"),
    ("alpha.png", (45, 90), "RGBA PNG: alpha dropped"),
    ("rotated.jpg", (90, 61), "JPEG with Exif orientation 6 (a phone held upright): turned upright first"),
]
# Exif orientation written into an image file (the rest are written without Exif).
ORIENTATION = {"rotated.jpg": 6}
ORIENTATION_DIR = PROCESSOR / "orientation"
MIN_PIXELS, MAX_PIXELS = 28 * 28 * 4, 28 * 28 * 16
PROMPT = "How many red circles are there?"


def draw_image(size, seed, mode):
    """Smooth gradients, a few filled shapes and noise: edges and texture for the resampler."""
    import numpy as np
    from PIL import Image, ImageDraw
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x + y) * 127.0 / (w + h)], -1)
    base += rng.normal(0, 18, base.shape)
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(2, max(3, min(w, h) // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        d.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], fill=colour)
    if mode == "RGBA":
        alpha = Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L")
        img = img.convert("RGBA")
        img.putalpha(alpha)
    return img


def exif_with_orientation(value):
    from PIL import Image
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def make_orientations():
    """Every Exif orientation 1-8, in a JPEG and in a PNG (eXIf chunk) of a tiny non-square
    image: <k>.jpg and <k>.png, and what PIL's exif_transpose makes of each, as plain PNG
    (<k>.jpg.upright.png, <k>.png.upright.png)."""
    import numpy as np
    from PIL import Image, ImageOps
    ORIENTATION_DIR.mkdir(parents=True)
    rng = np.random.default_rng(7)
    img = Image.fromarray(rng.integers(0, 256, (5, 9, 3), dtype=np.uint8), "RGB")
    for k in range(1, 9):
        for ext, opts in (("jpg", {"quality": 95, "subsampling": 0}), ("png", {})):
            path = ORIENTATION_DIR / f"{k}.{ext}"
            img.save(path, exif=exif_with_orientation(k), **opts)
            upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            upright.save(ORIENTATION_DIR / f"{k}.{ext}.upright.png")
    print("orientation files:", len(list(ORIENTATION_DIR.iterdir())))


def make_processor():
    from PIL import Image, ImageOps
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    if PROCESSOR.exists():
        shutil.rmtree(PROCESSOR)
    PROCESSOR.mkdir(parents=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    image_processor = Qwen2VLImageProcessorPil(min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS)
    # Without torchvision the processor cannot type-check its (unused, None) video processor.
    Qwen2_5_VLProcessor.check_argument_for_proper_class = lambda self, name, arg: None
    processor = Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=fast, chat_template=TEMPLATE)
    # Saved part by part (the processor's own save needs a video processor): the layout of
    # published Qwen2-VL checkpoints, with the template in chat_template.json.
    fast.save_pretrained(PROCESSOR)
    image_processor.save_pretrained(PROCESSOR)
    (PROCESSOR / "chat_template.json").write_text(json.dumps({"chat_template": TEMPLATE}, indent=2) + "\n")

    cases = []
    for i, (name, size, what) in enumerate(IMAGES):
        mode = "RGBA" if name == "alpha.png" else "RGB"
        img = draw_image(size, 100 + i, mode)
        extra = {"exif": exif_with_orientation(ORIENTATION[name])} if name in ORIENTATION else {}
        if name.endswith(".jpg"):
            img.save(PROCESSOR / name, quality=90, **extra)
        else:
            img.save(PROCESSOR / name, **extra)
        # What a user's file decodes to, turned by its Exif orientation as transformers'
        # load_image turns it (ImageOps.exif_transpose; a no-op without Exif).
        loaded = ImageOps.exif_transpose(Image.open(PROCESSOR / name))
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPT}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        out = processor(text=[text], images=[loaded], return_tensors="pt")
        save_file({
            "input_ids": out["input_ids"].contiguous(),
            "pixel_values": out["pixel_values"].float().contiguous(),
            "image_grid_thw": out["image_grid_thw"].contiguous(),
        }, PROCESSOR / f"{name}.safetensors", metadata={"format": "pt"})
        grid = out["image_grid_thw"][0].tolist()
        print(f"processor {name} {size}: grid {grid}, {out['input_ids'].shape[1]} ids")
        cases.append(dict(image=name, prompt=PROMPT, what=what))
    (PROCESSOR / "cases.json").write_text(json.dumps(cases, indent=2) + "\n")
    make_orientations()
    print("processor files:", sorted(p.name for p in PROCESSOR.iterdir()))


# ----------------------------------------------------------------------------- verify

def verify_saved(ckpt_dir, case):
    data = load_file(OUT / f"{case}.safetensors")
    model = load_hf(ckpt_dir)
    inp = {k: data[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw") if k in data}
    with torch.no_grad():
        logits = clean_forward(model, inp, data["position_ids"]).logits
    v = data["valid"].bool()
    diff = (logits[v] - data["logits"][v]).abs().max().item()
    ok = diff <= VERIFY_TOL
    print(f"verify {ckpt_dir} / {case}: max |dlogits| over valid positions = {diff:.3e} "
          f"({'ok' if ok else f'FAIL, tolerance {VERIFY_TOL:g}'})")
    return ok


# ----------------------------------------------------------------------------- pgpo tvd

def make_tvd():
    """Rows 0 and 1 are the same question and response about two different images (equal
    ids, different pixels): a scorer that shares the prompt by ids alone scores row 1 with
    row 0's image. Row 2 is another prompt of another length (left padding). Saves the batch
    with response_mask and transformers' clean logits, blind logits (image pads masked) and
    blind logits with the markers masked too; and each row alone as an input file."""
    model = load_hf(OUT / "base")
    g = torch.Generator().manual_seed(21)
    text = lambda n: torch.randint(TEXT_LO, TEXT_HI, (n,), generator=g).tolist()
    image = lambda h, w: [VISION_START] + [IMAGE_PAD] * (h * w // 4) + [VISION_END]
    shared_prompt, shared_response = text(5) + image(4, 6) + text(4), text(6)
    rows = [(shared_prompt, shared_response, (1, 4, 6)),
            (shared_prompt, shared_response, (1, 4, 6)),
            (text(3) + image(6, 4) + text(7), text(9), (1, 6, 4))]
    dim = patch_dim(model.config)
    pixels = [torch.rand((t * h * w, dim), generator=g) * 3.0 - 1.5 for _, _, (t, h, w) in rows]
    assert not torch.equal(pixels[0], pixels[1])

    def batch(rs, px):
        B, T = len(rs), max(len(p) + len(r) for p, r, _ in rs)
        ids = torch.full((B, T), PAD_ID, dtype=torch.long)
        mask = torch.zeros((B, T), dtype=torch.long)
        response = torch.zeros((B, T), dtype=torch.long)
        for b, (p, r, _) in enumerate(rs):
            seq = p + r
            ids[b, T - len(seq):] = torch.tensor(seq)
            mask[b, T - len(seq):] = 1
            response[b, T - len(r):] = 1
        return dict(input_ids=ids, attention_mask=mask, response_mask=response,
                    mm_token_type_ids=(ids == IMAGE_PAD).long(),
                    pixel_values=torch.cat(px), image_grid_thw=torch.tensor([list(grid) for _, _, grid in rs]))

    inp = batch(rows, pixels)
    ids, mask = inp["input_ids"], inp["attention_mask"]
    with torch.no_grad():
        pos = rope_positions(model, inp)
        clean = clean_forward(model, inp, pos).logits
        blind_mask = mask * (ids != IMAGE_PAD)
        blind = model(input_ids=ids, attention_mask=blind_mask, position_ids=pos).logits
        marker_mask = blind_mask * (ids != VISION_START) * (ids != VISION_END)
        blind_marker = model(input_ids=ids, attention_mask=marker_mask, position_ids=pos).logits
    # The signal: rows 0 and 1 differ only in the image, and their clean logits differ.
    effect = (clean[0] - clean[1])[inp["response_mask"][0].bool()].abs().max().item()
    assert effect > 1e-3, f"the two images give the same logits ({effect})"
    out = {k: v for k, v in inp.items() if k != "mm_token_type_ids"}
    out.update(logits=clean, blind_logits=blind, blind_marker_logits=blind_marker)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "tvd_shared_prompt.safetensors", metadata={"format": "pt"})
    for r in range(len(rows)):
        one = batch(rows[r:r + 1], pixels[r:r + 1])
        one.pop("mm_token_type_ids")
        save_file({k: v.contiguous() for k, v in one.items()}, OUT / f"tvd_shared_prompt_row{r}.safetensors", metadata={"format": "pt"})
    print(f"tvd: batch {list(ids.shape)}, rows 0 and 1 share ids; clean logits differ by up to {effect:.4f}")


# ----------------------------------------------------------------------------- LoRA (peft)

# name -> (checkpoint, input case, LoraConfig arguments, adapter dtype, key naming). Every
# lora_B is random (init_lora_weights=False), so every adapter gradient is non-zero.
LORA = {
    # PEFT's list form: the suffixes also select the vision tower's qkv, proj and MLP; a
    # rank_pattern and an alpha_pattern; keys as PEFT writes them under transformers 5.
    "lora_list": ("base", "padded_batch", dict(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                           "down_proj", "qkv", "attn.proj"],
        rank_pattern={"down_proj": 2}, alpha_pattern={"qkv": 3}), torch.float32, "nested"),
    # A regular expression over the decoder only, rsLoRA, bf16 adapter weights, and the keys
    # older transformers wrote (base_model.model.model.layers.N...), on the bf16 checkpoint.
    "lora_regex": ("flat_bf16", "flat_bf16", dict(
        r=4, lora_alpha=6, use_rslora=True,
        target_modules=r".*\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)"), torch.bfloat16, "legacy"),
}


def peft_key(module_param, naming):
    """PEFT's saved key of a LoRA parameter (module path with `.default`)."""
    key = "base_model.model." + module_param.replace(".default", "")
    if naming == "legacy":
        key = key.replace("base_model.model.model.language_model.", "base_model.model.model.")
    return key


def make_lora():
    from peft import LoraConfig, get_peft_model
    for name, (ckpt, case, args, dtype, naming) in LORA.items():
        model = build_model(ckpt)
        peft_model = get_peft_model(model, LoraConfig(init_lora_weights=False, lora_dropout=0.0, **args))
        g = torch.Generator().manual_seed(31 + list(LORA).index(name))
        with torch.no_grad():
            for n, p in model.named_parameters():
                if "lora_" in n:
                    # Wide enough that the adapters move the logits; rounded to the stored dtype.
                    p.copy_((torch.randn(p.shape, generator=g) * 0.3).to(dtype).float())
        d = OUT / name
        peft_model.save_pretrained(d)
        (d / "README.md").unlink(missing_ok=True)  # PEFT's model card, not needed here
        stored = load_file(d / "adapter_model.safetensors")
        spec = next(c for c in CASES if c["case"] == case)
        inp = build_inputs(spec, patch_dim(model.config))
        pos = rope_positions(model, inp)
        model.zero_grad(set_to_none=True)
        out = clean_forward(model, inp, pos, labels=inp["labels"])
        out.loss.backward()
        tensors = dict(input_ids=inp["input_ids"], attention_mask=inp["attention_mask"], labels=inp["labels"],
                       position_ids=pos.contiguous(), valid=inp["attention_mask"].clone(),
                       logits=out.logits.detach(), loss=out.loss.detach().reshape(1))
        if "pixel_values" in inp:
            tensors["pixel_values"], tensors["image_grid_thw"] = inp["pixel_values"], inp["image_grid_thw"]
        grads = {peft_key(n, "nested"): p.grad for n, p in model.named_parameters() if "lora_" in n}
        assert set(grads) == set(stored), f"{name}: gradient keys {sorted(set(grads) ^ set(stored))}"
        grads = {peft_key(k[len("base_model.model."):], naming): v for k, v in grads.items()}
        for k, gr in grads.items():
            assert gr is not None and gr.abs().max() > 0, f"{name}: zero gradient for {k}"
            tensors["grad." + k] = gr.detach().clone()
        save_file({k: v.contiguous() for k, v in tensors.items()}, OUT / f"{name}.safetensors", metadata={"format": "pt"})
        # PEFT itself reads the adapter back to the same logits (before the keys are renamed:
        # PEFT 0.22 under transformers 5 no longer reads the older names).
        check = verify_adapter(OUT / ckpt, d, OUT / f"{name}.safetensors")
        assert check, f"{name}: PeftModel.from_pretrained does not reproduce the logits"
        if naming == "legacy" or dtype != torch.float32:
            stored = {peft_key(k[len("base_model.model."):], naming): v.to(dtype) for k, v in stored.items()}
            save_file(stored, d / "adapter_model.safetensors", metadata={"format": "pt"})
        print(f"{name}: {len(stored)} adapter tensors, keys like {sorted(stored)[0]}, loss {out.loss.item():.4f}")


def verify_adapter(base_dir, adapter_dir, case_file, logits_file=None):
    """PEFT on `base_dir` + `adapter_dir` against the logits in `case_file`, or in
    `logits_file` (`pgpo forward --adapter ... --out`) for the inputs in `case_file` (as
    `pgpo preprocess` writes them: no mask, no positions)."""
    from peft import PeftModel
    data = load_file(case_file)
    model = PeftModel.from_pretrained(load_hf(base_dir), peft_readable(adapter_dir)).eval()
    if logits_file:
        data["logits"] = load_file(logits_file)["logits"]
    data.setdefault("attention_mask", torch.ones_like(data["input_ids"]))
    data.setdefault("valid", data["attention_mask"])
    if "position_ids" not in data:
        data["mm_token_type_ids"] = (data["input_ids"] == model.config.image_token_id).long()
        data["position_ids"] = rope_positions(model.base_model.model, data)
    inp = {k: data[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw") if k in data}
    with torch.no_grad():
        logits = model(**inp, position_ids=data["position_ids"]).logits
    v = data["valid"].bool()
    diff = (logits[v] - data["logits"][v]).abs().max().item()
    effect = (load_hf(base_dir)(**inp, position_ids=data["position_ids"]).logits[v] - data["logits"][v]).abs().max().item()
    ok = diff <= VERIFY_TOL * 10 and effect > 1e-2
    print(f"verify base {base_dir} + adapter {adapter_dir} against {case_file}: max |dlogits| {diff:.3e}, the adapter moves them by {effect:.3f} "
          f"({'ok' if ok else 'FAIL'})")
    return ok


def peft_readable(adapter_dir):
    """`adapter_dir`, or a temporary copy with the keys older transformers wrote
    (base_model.model.model.layers.N...) renamed to transformers 5's, which PEFT 0.22 reads."""
    import tempfile
    stored = load_file(Path(adapter_dir) / "adapter_model.safetensors")
    old = "base_model.model.model.layers."
    if not any(k.startswith(old) for k in stored):
        return Path(adapter_dir)
    d = Path(tempfile.mkdtemp(prefix="peft-readable-"))
    shutil.copy(Path(adapter_dir) / "adapter_config.json", d / "adapter_config.json")
    renamed = {k.replace(old, "base_model.model.model.language_model.layers."): v for k, v in stored.items()}
    save_file(renamed, d / "adapter_model.safetensors", metadata={"format": "pt"})
    return d


def stored_dtype(d):
    return next(iter(read_safetensors_dir(d).values())).dtype


def verify_merged(base_dir, merged_dir, adapter_dir, case_file):
    """A merged checkpoint (pgpo merge) against PEFT's merge_and_unload of the same base and
    adapter in the base's stored dtype: every weight, then the logits. For an f32 base the
    logits must also equal the unmerged LoRA model's (in `case_file`); a bf16 base rounds the
    merged weights, as PEFT's merge does, so there only the two merges are compared."""
    from peft import PeftModel
    dtype = stored_dtype(base_dir)
    assert stored_dtype(merged_dir) == dtype, f"the merged checkpoint is {stored_dtype(merged_dir)}, the base {dtype}"
    ours = Qwen2_5_VLForConditionalGeneration.from_pretrained(merged_dir, dtype=dtype).eval()
    base = Qwen2_5_VLForConditionalGeneration.from_pretrained(base_dir, dtype=dtype).eval()
    theirs = PeftModel.from_pretrained(base, peft_readable(adapter_dir)).merge_and_unload().eval()
    worst, differing, total = 0.0, 0, 0
    for (n1, p1), (n2, p2) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert n1 == n2 and p1.dtype == p2.dtype, f"{n1} {p1.dtype} vs {n2} {p2.dtype}"
        d = (p1.float() - p2.float()).abs()
        worst = max(worst, (d.max() / p2.float().abs().max().clamp(min=1e-30)).item())
        differing += int((d > 0).sum())
        total += p1.numel()
    data = load_file(case_file)
    inp = {k: data[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw") if k in data}
    with torch.no_grad():
        a = ours.float()(**inp, position_ids=data["position_ids"]).logits
        b = theirs.float()(**inp, position_ids=data["position_ids"]).logits
    v = data["valid"].bool()
    between = (a[v] - b[v]).abs().max().item()
    to_lora = (a[v] - data["logits"][v]).abs().max().item()
    ok = worst <= 1e-2 and between <= 0.1 and (dtype != torch.float32 or to_lora <= VERIFY_TOL * 10)
    print(f"verify merged {merged_dir} ({dtype}) against peft's merge_and_unload: {differing} of {total} weights "
          f"differ (largest by {worst:.1e} of the tensor's largest), logits differ by {between:.3e}; "
          f"the unmerged LoRA model's logits by {to_lora:.3e} ({'ok' if ok else 'FAIL'})")
    return ok


# ----------------------------------------------------------------------------- main

def main():
    if OUT.exists():
        shutil.rmtree(OUT)  # rebuild from scratch so no stale file survives
    OUT.mkdir(parents=True)

    models, names = {}, {}
    for name in CHECKPOINTS:
        model = build_model(name)
        d = OUT / name
        if name == "flat_bf16":
            save_flat_bf16(model, d)
            stored = read_safetensors_dir(d)
            names[name] = stored_name_map(model, stored.keys())
            check_same_weights(model, stored, names[name], widen=True)
            # transformers itself must read the flat/legacy/bf16 layout back to the same weights.
            reloaded = load_hf(d)
            for (n1, p1), (n2, p2) in zip(model.named_parameters(), reloaded.named_parameters()):
                assert n1 == n2 and torch.equal(p1, p2), f"reloaded {n1} differs"
            assert reloaded.config.text_config.rope_parameters["mrope_section"] == MROPE_SECTION
        else:
            model.save_pretrained(d)
            stored = read_safetensors_dir(d)
            names[name] = stored_name_map(model, stored.keys())
            check_same_weights(model, stored, names[name])
            print(f"{name}: save_pretrained wrote {len(stored)} tensors:")
            for k in sorted(stored):
                print(f"    {k} {list(stored[k].shape)}")
        models[name] = model

    stats = {}
    for spec in CASES:
        stats[spec["case"]] = make_case(spec, models[spec["checkpoint"]], names[spec["checkpoint"]])
    (OUT / "cases.json").write_text(json.dumps(
        [{k: spec[k] for k in ("case", "checkpoint", "what")} for spec in CASES], indent=2) + "\n")

    # Every case must reproduce from the checkpoint as transformers loads it from disk
    # (for flat_bf16 this is the required round trip through the published layout).
    ok = all(verify_saved(OUT / spec["checkpoint"], spec["case"]) for spec in CASES)
    make_generations()
    make_processor()
    make_tvd()
    make_lora()

    for case, s in stats.items():
        print(f"{case:14s} logits std {s['std']:.3f}  max|logit| {s['max']:.3f}  loss {s['loss']:.4f}")
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"total fixture size: {size / 1e6:.2f} MB ({size} bytes)")
    assert size < 5 * 1024 * 1024, "fixtures must stay under 5 MB"
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify-saved", metavar="DIR", help="checkpoint directory to check")
    parser.add_argument("--case", help="case name (with --verify-saved)")
    parser.add_argument("--generation", action="store_true", help="rewrite only the generation fixtures")
    parser.add_argument("--processor", action="store_true", help="rewrite only the processor fixtures")
    parser.add_argument("--tvd", action="store_true", help="rewrite only the pgpo tvd fixtures")
    parser.add_argument("--lora", action="store_true", help="rewrite only the LoRA (peft) fixtures")
    parser.add_argument("--verify-adapter", nargs="+", metavar="BASE ADAPTER CASE_FILE [LOGITS]",
                        help="PEFT on BASE + ADAPTER against the logits in CASE_FILE, or in LOGITS (pgpo forward --adapter --out) for CASE_FILE's inputs")
    parser.add_argument("--verify-merged", nargs=4, metavar=("BASE", "MERGED", "ADAPTER", "CASE_FILE"),
                        help="MERGED (pgpo merge) against peft's merge_and_unload of BASE + ADAPTER, and the logits in CASE_FILE")
    args = parser.parse_args()
    parser_done = False
    if args.generation:
        make_generations()
        parser_done = True
    if args.processor:
        make_processor()
        parser_done = True
    if args.tvd:
        make_tvd()
        parser_done = True
    if args.lora:
        make_lora()
        parser_done = True
    if args.verify_adapter:
        if len(args.verify_adapter) not in (3, 4):
            parser.error("--verify-adapter takes BASE ADAPTER CASE_FILE [LOGITS]")
        sys.exit(0 if verify_adapter(*map(Path, args.verify_adapter)) else 1)
    if args.verify_merged:
        sys.exit(0 if verify_merged(*map(Path, args.verify_merged)) else 1)
    if parser_done:
        sys.exit(0)
    if args.verify_saved:
        if not args.case:
            parser.error("--verify-saved needs --case")
        sys.exit(0 if verify_saved(args.verify_saved, args.case) else 1)
    main()
