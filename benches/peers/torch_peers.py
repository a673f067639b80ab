"""PyTorch eager (CPU) on the workloads and shapes of `pgpo bench`, and the pgpo/PyTorch table.

    cargo build --release
    python benches/peers/torch_peers.py [--quick] [--threads N]

Each workload runs in its own subprocess, so its peak resident memory (ru_maxrss) is its
own; the time is the median of repeated runs after a warm-up, and the table shows the
median over --runs whole comparisons (the machine this was written on is noisy). The script then runs
`target/release/pgpo bench --json --backend cpu` at the same shapes and prints a markdown
table: PyTorch ms, pgpo ms, speed-up (PyTorch time / pgpo time), and PyTorch's peak memory.
"""
import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

V = 151_936


def shapes(quick):
    return {
        "kl_n": 512 if quick else 4096,
        "ce_n": 256 if quick else 1024,
        "mm": [512, 1024] if quick else [1024, 2048],
        "rows": 2048 if quick else 4096,
        "t": 1024 if quick else 2048,
    }


def workload(name, quick):
    """Returns (pgpo kernel name, shape label, a zero-argument function running it once)."""
    import torch
    import torch.nn.functional as F

    s = shapes(quick)
    g = torch.Generator().manual_seed(0)
    rand = lambda *shape: torch.rand(*shape, generator=g) * 2 - 1
    if name.startswith("matmul"):
        m = s["mm"][int(name[-1])]
        a, b = rand(m, m), rand(m, m)
        return "matmul", f"{m}x{m}x{m}", lambda: a @ b
    if name == "softmax":
        x = rand(s["rows"], 4096)
        return "softmax", f"[{s['rows']}, 4096]", lambda: torch.softmax(x, -1)
    if name == "rms_norm":
        x, w = rand(s["rows"], 4096), rand(4096)
        return "rms_norm", f"[{s['rows']}, 4096]", lambda: F.rms_norm(x, (4096,), w, 1e-6)
    if name == "cross_entropy":
        n = s["ce_n"]
        x = rand(n, V).requires_grad_(True)
        t = torch.arange(n) * 7919 % V

        def run():
            x.grad = None
            F.cross_entropy(x, t).backward()

        return "cross_entropy fwd+bwd", f"[{n}, {V}]", run
    if name == "kl_dual":
        n = s["kl_n"]
        clean, blind = rand(n, V), rand(n, V)
        tok = (torch.arange(n) * 7919 % V)[:, None]

        def run():
            lc, lb = torch.log_softmax(clean, -1), torch.log_softmax(blind, -1)
            kl = (lc.exp() * (lc - lb)).sum(-1)
            pc, pb = lc.gather(1, tok)[:, 0], lb.gather(1, tok)[:, 0]
            d = (pb - pc).clamp(-20, 20)
            return kl, pc, pb, d.exp() - 1 - d

        return "kl_dual", f"[{n}, {V}]", run
    if name == "policy_loss":
        n = s["kl_n"]
        x = rand(n, V).requires_grad_(True)
        tok = (torch.arange(n) * 7919 % V)[:, None]
        old = torch.full((n,), -12.0)
        adv = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)

        def run():
            x.grad = None
            logp = torch.log_softmax(x, -1).gather(1, tok)[:, 0]
            ratio = torch.exp(logp - old)
            c1 = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.28))
            pg = torch.where(adv < 0, torch.minimum(-adv * 3.0, c1), c1)
            pg.mean().backward()

        return "policy_loss fwd+bwd", f"[{n}, {V}]", run
    if name == "policy_loss_linear":
        # The LM head and the clipped loss as PyTorch users run them: logits, log_softmax,
        # gather, backward into the hidden states and the head. pgpo's rows at this shape:
        # policy_loss_linear (fused, row chunks) and policy_loss unfused.
        n, hd = (256, 2048) if quick else (2048, 2048)
        h = rand(n, hd).requires_grad_(True)
        w = (rand(V, hd) * 0.02).requires_grad_(True)
        tok = (torch.arange(n) * 7919 % V)[:, None]
        old = torch.full((n,), -float(torch.log(torch.tensor(float(V)))))
        adv = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)

        def run():
            h.grad, w.grad = None, None
            logits = h @ w.T
            logp = torch.log_softmax(logits, -1).gather(1, tok)[:, 0]
            ratio = torch.exp(logp - old)
            c1 = torch.maximum(-adv * ratio, -adv * ratio.clamp(0.8, 1.28))
            pg = torch.where(adv < 0, torch.minimum(-adv * 3.0, c1), c1)
            pg.mean().backward()

        return "policy_loss_linear fwd+bwd", f"N{n} H{hd} V{V}", run
    if name.startswith("attention"):
        t = s["t"]
        q, k, v = (rand(1, 16, t, 128) for _ in range(3))
        label = f"B1 H16 T{t} D128 causal"
        if name == "attention_fwd":
            return "attention fwd", label, lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        qg, kg, vg = (z.clone().requires_grad_(True) for z in (q, k, v))
        dout = rand(1, 16, t, 128)

        def run():
            F.scaled_dot_product_attention(qg, kg, vg, is_causal=True).backward(dout)

        return "attention fwd+bwd", label, run
    if name.startswith("model_"):
        return model_workload(name)
    if name == "rl_step":
        return rl_step_workload()
    raise ValueError(name)


# The default trainer's model (src/train/tiny.rs, config_json(320, 128, 4)) and step shapes
# (src/train/config.rs: 24 prompts x G 8, 24 new tokens, mini-batches of 64). The prompt is
# 79 tokens with one 56x56 image (4 merged image tokens), as the synthetic task's are.
RL_TINY = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "bos_token_id": 0,
    "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "silu", "hidden_size": 128, "intermediate_size": 384,
    "max_position_embeddings": 512, "num_attention_heads": 4, "num_hidden_layers": 4, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6, "rope_scaling": {"mrope_section": [4, 6, 6], "type": "mrope"}, "rope_theta": 10000.0,
    "tie_word_embeddings": True, "image_token_id": 5, "video_token_id": 6, "vision_start_token_id": 3,
    "vision_end_token_id": 4, "vocab_size": 320,
    "vision_config": {"depth": 2, "fullatt_block_indexes": [1], "hidden_act": "silu", "hidden_size": 64, "in_chans": 3,
                      "intermediate_size": 128, "num_heads": 2, "out_hidden_size": 128, "patch_size": 14,
                      "spatial_merge_size": 2, "temporal_patch_size": 2, "tokens_per_second": 2, "window_size": 56},
}


def rl_step_workload():
    """One PGPO step in PyTorch eager with transformers' model, as src/train/rl_step.rs runs it:
    sampled rollouts with the KV cache (old log-probs from the scores), rewards, group
    advantages, clean and blind teacher-forced passes (the blind one masks the image pads out
    of attention and keeps the 3-D positions), the k3 TVD, PGPO weights, then mini-batches of
    the clipped policy loss (token mean) with backward, gradient clipping and AdamW. The vision
    tower is frozen, as in the default run."""
    import torch
    import torch.nn.functional as F
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    c = RL_TINY
    cfg = Qwen2_5_VLConfig(**c)
    cfg._attn_implementation = ATTN["impl"]
    model = Qwen2_5_VLForConditionalGeneration(cfg).float()
    for n, p in model.named_parameters():
        p.requires_grad_(not n.startswith("model.visual"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=2e-4, weight_decay=0.0)
    prompts, group, t, new, mini = 24, 8, 79, 24, 64
    b = prompts * group
    start, pads = 20, 4
    row = [c["vision_start_token_id"] if i == start else c["image_token_id"] if start < i <= start + pads
           else c["vision_end_token_id"] if i == start + pads + 1 else (7 * i + 3) % 100 + 10 for i in range(t)]
    ids = torch.tensor([row] * b)
    pd = 3 * 2 * 14 * 14
    pixels = torch.rand(b * 16, pd) * 2 - 1
    thw = torch.tensor([[1, 4, 4]] * b)
    image = c["image_token_id"]

    def run():
        # 1-2. Rollouts: G samples per prompt at temperature 1, every one 24 tokens long; the
        # vision tokens are suppressed, as pgpo suppresses them.
        model.eval()
        with torch.no_grad():
            model.model.rope_deltas = None
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels, image_grid_thw=thw,
                                 mm_token_type_ids=(ids == image).long(), do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                                 max_new_tokens=new, min_new_tokens=new, eos_token_id=None, pad_token_id=0,
                                 suppress_tokens=[3, 4, 5, 6], output_scores=True, return_dict_in_generate=True)
        seqs = out.sequences
        resp = seqs[:, t:]
        old_logp = torch.stack([F.log_softmax(s.float(), -1) for s in out.scores], 1).gather(-1, resp[..., None])[..., 0]
        # 3-4. Rewards (a stand-in as cheap as pgpo's string check) and group advantages.
        reward = (resp[:, -1] % 2 == 0).float().view(prompts, group)
        adv = ((reward - reward.mean(1, keepdim=True)) / (reward.std(1, keepdim=True) + 1e-6)).view(b)
        # 5. Clean and blind teacher-forced passes over prompt + response, no grad.
        full = torch.ones_like(seqs)
        mm = (seqs == image).long()
        with torch.no_grad():
            pos, _ = model.model.get_rope_index(seqs, mm_token_type_ids=mm, image_grid_thw=thw, attention_mask=full)
            clean = model(input_ids=seqs, attention_mask=full, pixel_values=pixels, image_grid_thw=thw, position_ids=pos).logits
            blind = model(input_ids=seqs, attention_mask=full * (seqs != image), position_ids=pos).logits
            lc = F.log_softmax(clean[:, t - 1:-1].float(), -1).gather(-1, resp[..., None])[..., 0]
            lb = F.log_softmax(blind[:, t - 1:-1].float(), -1).gather(-1, resp[..., None])[..., 0]
            # 6. k3 TVD; 7. PGPO weights (normalise, threshold tau, amplify, keep the mass).
            d = (lc - lb).clamp(-20, 20)
            tvd = torch.exp(-d) - 1 + d
            norm = tvd / (tvd.max(1, keepdim=True).values + 1e-8)
            w = torch.where(norm >= 0.4, 1 + 2.0 * norm, torch.full_like(norm, 0.1))
            w = w * new / w.sum(1, keepdim=True)
        token_adv = adv[:, None] * w
        # 8-9. Mini-batches of the clipped policy loss, backward, clipping, AdamW.
        model.train()
        for s in range(0, b, mini):
            sl = slice(s, s + mini)
            logits = model(input_ids=seqs[sl], attention_mask=full[sl], pixel_values=pixels[s * 16:(s + mini) * 16],
                           image_grid_thw=thw[sl], position_ids=pos[:, sl]).logits
            logp = F.log_softmax(logits[:, t - 1:-1].float(), -1).gather(-1, resp[sl, :, None])[..., 0]
            ratio = torch.exp(logp - old_logp[sl])
            a = token_adv[sl]
            loss = -torch.min(ratio * a, ratio.clamp(0.8, 1.28) * a).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

    return "rl step", f"tiny default, {prompts} prompts x G {group}, prompt {t} + {new} new", run


def model_workload(name):
    """Qwen2.5-VL forward (no grad) or forward+backward, at a configuration of
    src/bench/model_configs.json, on the batch `pgpo bench` builds (src/bench/model.rs)."""
    import os
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    # _bf16: a bf16 checkpoint computed in f32; _bf16c: the same computed in bf16, as
    # from_pretrained's default dtype="auto" runs a bf16 checkpoint.
    bf16c = name.endswith("_bf16c")
    bf16 = bf16c or name.endswith("_bf16")
    kind, size = name[len("model_"):].removesuffix("_bf16c").removesuffix("_bf16").rsplit("_", 1)
    path = os.path.join(os.path.dirname(__file__), "..", "..", "src", "bench", "model_configs.json")
    with open(path) as f:
        w = json.load(f)[size]
    c = w["config"]
    cfg = Qwen2_5_VLConfig(**c)
    cfg._attn_implementation = ATTN["impl"]
    model = Qwen2_5_VLForConditionalGeneration(cfg).float()
    if bf16:
        # A bf16 checkpoint loaded with dtype=float32: every weight a bf16 value, computed in
        # f32 (pgpo's "bf16 checkpoint" rows hold the same).
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.bfloat16().float())
        if bf16c:
            model = model.to(torch.bfloat16)
    b, t, grid = w["batch"], w["seq"], w["grid"]
    if kind == "generate":
        b, t, new_tokens = w["generate"]["batch"], w["generate"]["seq"], w["generate"]["new_tokens"]
    pads = grid[0] * grid[1] * grid[2] // 4
    row = []
    for i in range(t):
        if i == 4:
            row.append(c["vision_start_token_id"])
        elif 4 < i <= 4 + pads:
            row.append(c["image_token_id"])
        elif i == 5 + pads:
            row.append(c["vision_end_token_id"])
        else:
            row.append((7 * i + 3) % 100 + 3)
    ids = torch.tensor([row] * b)
    v = c["vision_config"]
    pd = v["in_chans"] * v["temporal_patch_size"] * v["patch_size"] ** 2
    pixels = torch.rand(b * grid[0] * grid[1] * grid[2], pd) * 2 - 1
    if bf16c:
        pixels = pixels.to(torch.bfloat16)
    thw = torch.tensor([grid] * b)
    kw = dict(input_ids=ids, pixel_values=pixels, image_grid_thw=thw, mm_token_type_ids=(ids == c["image_token_id"]).long())
    label = f"{size} B{b} T{t} image [{grid[0]}, {grid[1]}, {grid[2]}]"
    if kind == "generate":
        model.eval()
        label = f"{size} B{b} prompt {t} + {new_tokens} new, image [{grid[0]}, {grid[1]}, {grid[2]}], greedy" + (", bf16 checkpoint" if bf16 else "")
        kw["attention_mask"] = torch.ones_like(ids)

        def run():
            # Greedy with the KV cache; min = max new tokens so no row stops early (pgpo's
            # bench row has no stop ids either).
            with torch.no_grad():
                model.model.rope_deltas = None
                model.generate(**kw, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               eos_token_id=None, pad_token_id=0)

        # The bf16-compute row is set against pgpo's bf16-checkpoint row (pgpo computes in f32).
        return "model generate" + (" (transformers computing in bf16)" if bf16c else ""), label, run
    if kind == "fwd":
        model.eval()

        def run():
            with torch.no_grad():
                model(**kw)

        return "model fwd", label, run

    def run():
        model.zero_grad(set_to_none=True)
        model(**kw, labels=ids).loss.backward()

    return "model fwd+bwd", label, run


NAMES = ["matmul0", "matmul1", "softmax", "rms_norm", "cross_entropy", "kl_dual", "policy_loss", "policy_loss_linear", "attention_fwd", "attention_fwdbwd",
         "model_fwd_tiny", "model_fwdbwd_tiny", "model_fwd_small", "model_fwdbwd_small",
         "model_generate_tiny", "model_generate_small", "model_generate_tiny_bf16", "model_generate_small_bf16",
         "model_generate_small_bf16c", "rl_step"]


# transformers' attention for the model workloads: "sdpa" (its default, what its users run)
# or "eager"; set by --attn, passed on to each child.
ATTN = {"impl": "sdpa"}


def child(name, quick, threads):
    import torch

    torch.set_num_threads(threads)
    kernel, shape, run = workload(name, quick)
    # Resident memory once the inputs exist: the peak beyond it is the workload's own.
    base_mb = rss_mb()
    run()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (len(times) < 20 and time.perf_counter() - start < 1.0):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kernel": kernel, "shape": shape, "ms": statistics.median(times), "peak_mb": peak_mb, "own_peak_mb": peak_mb - base_mb, "torch": torch.__version__}))


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--child")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="transformers' attention for the model and rl_step workloads")
    ap.add_argument("--pgpo", default="target/release/pgpo")
    ap.add_argument("--runs", type=int, default=3, help="whole comparisons to run; the table shows medians")
    ap.add_argument("--skip", default="", help="comma-separated workloads to leave out, e.g. kl_dual,policy_loss")
    ap.add_argument("--only", default="", help="comma-separated workloads to run (default: all), e.g. model_fwd_small")
    ap.add_argument("--filter", default="", help="passed to pgpo bench --filter (e.g. model), to time only those rows")
    a = ap.parse_args()
    import os

    threads = a.threads or os.cpu_count()
    ATTN["impl"] = a.attn
    if a.child:
        return child(a.child, a.quick, threads)
    # Interleave the runs so a slow spell of the machine hits both sides alike.
    torch_runs, pgpo_runs = [], []
    for _ in range(a.runs):
        rows = []
        only = [n for n in a.only.split(",") if n]
        for name in [n for n in NAMES if n not in a.skip.split(",") and (not only or n in only)]:
            cmd = [sys.executable, __file__, "--child", name, "--attn", a.attn] + (["--quick"] if a.quick else []) + ["--threads", str(threads)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        torch_runs.append(rows)
        cmd = [a.pgpo, "bench", "--json", "--backend", "cpu"] + (["--quick"] if a.quick else []) + (["--filter", a.filter] if a.filter else [])
        pgpo_runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    torch_rows = [dict(r, ms=statistics.median(run[i]["ms"] for run in torch_runs)) for i, r in enumerate(torch_runs[0])]
    by_key = {}
    for run in pgpo_runs:
        for r in run:
            by_key.setdefault((r["kernel"], r["shape"]), []).append((r["ms"], r.get("peak_bytes")))
    by_key = {k: {"ms": statistics.median(m for m, _ in v), "peak_mb": v[0][1] / 1e6 if v[0][1] is not None else None} for k, v in by_key.items()}
    print(f"PyTorch {torch_rows[0]['torch']} eager mode, attention {a.attn}, {threads} threads; pgpo CPU backend; medians of {a.runs} runs\n")
    print("| kernel | shape | PyTorch ms | pgpo ms | speed-up (PyTorch / pgpo) | PyTorch peak RSS MB | PyTorch own peak MB | pgpo peak_bytes MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for t in torch_rows:
        p = by_key.get((t["kernel"].split(" (")[0], t["shape"]))
        pm = f"{p['ms']:.2f}" if p else "-"
        ratio = f"{t['ms'] / p['ms']:.2f}x" if p else "-"
        pk = f"{p['peak_mb']:.0f}" if p and p["peak_mb"] is not None else "-"
        print(f"| {t['kernel']} | {t['shape']} | {t['ms']:.2f} | {pm} | {ratio} | {t['peak_mb']:.0f} | {t['own_peak_mb']:.0f} | {pk} |")


if __name__ == "__main__":
    main()
