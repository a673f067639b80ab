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
    raise ValueError(name)


def model_workload(name):
    """Qwen2.5-VL forward (no grad) or forward+backward, at a configuration of
    src/bench/model_configs.json, on the batch `pgpo bench` builds (src/bench/model.rs)."""
    import os
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    kind, size = name[len("model_"):].rsplit("_", 1)
    path = os.path.join(os.path.dirname(__file__), "..", "..", "src", "bench", "model_configs.json")
    with open(path) as f:
        w = json.load(f)[size]
    c = w["config"]
    cfg = Qwen2_5_VLConfig(**c)
    cfg._attn_implementation = "eager"
    model = Qwen2_5_VLForConditionalGeneration(cfg).float()
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
    thw = torch.tensor([grid] * b)
    kw = dict(input_ids=ids, pixel_values=pixels, image_grid_thw=thw, mm_token_type_ids=(ids == c["image_token_id"]).long())
    label = f"{size} B{b} T{t} image [{grid[0]}, {grid[1]}, {grid[2]}]"
    if kind == "generate":
        model.eval()
        label = f"{size} B{b} prompt {t} + {new_tokens} new, image [{grid[0]}, {grid[1]}, {grid[2]}], greedy"
        kw["attention_mask"] = torch.ones_like(ids)

        def run():
            # Greedy with the KV cache; min = max new tokens so no row stops early (pgpo's
            # bench row has no stop ids either).
            with torch.no_grad():
                model.model.rope_deltas = None
                model.generate(**kw, do_sample=False, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                               eos_token_id=None, pad_token_id=0)

        return "model generate", label, run
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


NAMES = ["matmul0", "matmul1", "softmax", "rms_norm", "cross_entropy", "kl_dual", "policy_loss", "attention_fwd", "attention_fwdbwd",
         "model_fwd_tiny", "model_fwdbwd_tiny", "model_fwd_small", "model_fwdbwd_small",
         "model_generate_tiny", "model_generate_small"]


def child(name, quick, threads):
    import torch

    torch.set_num_threads(threads)
    kernel, shape, run = workload(name, quick)
    run()
    times, start = [], time.perf_counter()
    while len(times) < 3 or (len(times) < 20 and time.perf_counter() - start < 1.0):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kernel": kernel, "shape": shape, "ms": statistics.median(times), "peak_mb": peak_mb, "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    ap.add_argument("--child")
    ap.add_argument("--pgpo", default="target/release/pgpo")
    ap.add_argument("--runs", type=int, default=3, help="whole comparisons to run; the table shows medians")
    ap.add_argument("--skip", default="", help="comma-separated workloads to leave out, e.g. kl_dual,policy_loss")
    ap.add_argument("--only", default="", help="comma-separated workloads to run (default: all), e.g. model_fwd_small")
    ap.add_argument("--filter", default="", help="passed to pgpo bench --filter (e.g. model), to time only those rows")
    a = ap.parse_args()
    import os

    threads = a.threads or os.cpu_count()
    if a.child:
        return child(a.child, a.quick, threads)
    # Interleave the runs so a slow spell of the machine hits both sides alike.
    torch_runs, pgpo_runs = [], []
    for _ in range(a.runs):
        rows = []
        only = [n for n in a.only.split(",") if n]
        for name in [n for n in NAMES if n not in a.skip.split(",") and (not only or n in only)]:
            cmd = [sys.executable, __file__, "--child", name] + (["--quick"] if a.quick else []) + ["--threads", str(threads)]
            rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
        torch_runs.append(rows)
        cmd = [a.pgpo, "bench", "--json", "--backend", "cpu"] + (["--quick"] if a.quick else []) + (["--filter", a.filter] if a.filter else [])
        pgpo_runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    torch_rows = [dict(r, ms=statistics.median(run[i]["ms"] for run in torch_runs)) for i, r in enumerate(torch_runs[0])]
    by_key = {}
    for run in pgpo_runs:
        for r in run:
            by_key.setdefault((r["kernel"], r["shape"]), []).append(r["ms"])
    by_key = {k: {"ms": statistics.median(v)} for k, v in by_key.items()}
    print(f"PyTorch {torch_rows[0]['torch']} eager, {threads} threads; pgpo CPU backend; medians of {a.runs} runs\n")
    print("| kernel | shape | PyTorch ms | pgpo ms | speed-up (PyTorch / pgpo) | PyTorch peak RSS MB |")
    print("|---|---|---:|---:|---:|---:|")
    for t in torch_rows:
        p = by_key.get((t["kernel"], t["shape"]))
        pm = f"{p['ms']:.2f}" if p else "-"
        ratio = f"{t['ms'] / p['ms']:.2f}x" if p else "-"
        print(f"| {t['kernel']} | {t['shape']} | {t['ms']:.2f} | {pm} | {ratio} | {t['peak_mb']:.0f} |")


if __name__ == "__main__":
    main()
