"""Oracle fixtures for pgpo's PGPO-core tests, computed in float64 with PyTorch (CPU).

Run from the repository root:  /opt/oracle/bin/python tests/oracles/make_fixtures.py
Needs: pip install torch safetensors numpy. Writes tests/fixtures/*.safetensors.

- kl_*:      both log-probs of the sampled token, the exact full-vocabulary
             KL(p_clean || p_blind) and k3, at temperature 0.7.
- policy_*:  the clipped policy loss (clip 0.2/0.28, dual clip 3.0) for each aggregation
             mode, and its gradient with respect to the logits by autograd; three tokens
             reach the dual clip (negative advantage, ratio 5).
- rope_*:    Qwen2.5-VL's M-RoPE and vision 2-D rotary cos/sin tables, following
             transformers' modeling_qwen2_5_vl (split/cat by mrope_section * 2; rot_pos_emb).
- adv_*:     GRPO advantages, k3 dependency, PGPO weights (tau 0.4, beta 2) and token
             advantages, written from PGPO_METHOD.md independently of the Rust code.
"""
import os

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures")
torch.manual_seed(0)
f64 = torch.float64


def save(name, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(OUT, name))


def kl_fixture():
    n, v, t = 6, 1000, 0.7
    clean = torch.randn(n, v, dtype=f64) * 2.0
    blind = clean + torch.randn(n, v, dtype=f64) * torch.arange(n, dtype=f64)[:, None] * 0.3
    clean, blind = clean.float(), blind.float()
    tokens = torch.randint(0, v, (n,))
    lc = torch.log_softmax(clean.to(f64) / t, -1)
    lb = torch.log_softmax(blind.to(f64) / t, -1)
    kl = (lc.exp() * (lc - lb)).sum(-1)
    tc, tb = lc.gather(1, tokens[:, None])[:, 0], lb.gather(1, tokens[:, None])[:, 0]
    d = (tb - tc).clamp(-20, 20)
    save("kl_in.safetensors", {"clean": clean, "blind": blind, "tokens": tokens.long()})
    save("kl_out.safetensors", {"logp_clean": tc.float(), "logp_blind": tb.float(), "kl": kl.float(), "k3": (d.exp() - 1 - d).float()})


def policy_fixture():
    n, v = 12, 50
    logits = (torch.randn(n, v, dtype=f64) * 2.0).float()
    tokens = torch.randint(0, v, (n,))
    logp0 = torch.log_softmax(logits.to(f64), -1).gather(1, tokens[:, None])[:, 0]
    old = (logp0 - (torch.rand(n, dtype=f64) * 1.17 - 0.7)).float()
    adv = (torch.randn(n, dtype=f64) * 1.5).float()
    # Three tokens reach the dual clip: a negative advantage and a ratio of 5 (> 3). Set
    # without drawing, so the fixtures after this one keep their random values.
    dual = [0, 5, 9]
    old[dual] = (logp0[dual] - torch.log(torch.tensor(5.0, dtype=f64))).float()
    adv[dual] = -adv[dual].abs() - 0.5
    mask = torch.ones(n)
    mask[[3, 7]] = 0.0
    seq = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    save("policy_in.safetensors", {"logits": logits, "tokens": tokens.long(), "old_logp": old, "adv": adv, "mask": mask, "seq": seq.long()})
    for agg in ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"]:
        x = logits.to(f64).clone().requires_grad_(True)
        logp = torch.log_softmax(x, -1).gather(1, tokens[:, None])[:, 0]
        ratio = torch.exp(logp - old.to(f64))
        a = adv.to(f64)
        pg1 = -a * ratio
        pg2 = -a * torch.clamp(ratio, 1 - 0.2, 1 + 0.28)
        c1 = torch.maximum(pg1, pg2)
        c2 = torch.minimum(-a * 3.0, c1)
        pg = torch.where(a < 0, c2, c1)
        m = mask.to(f64)
        if agg == "token-mean":
            loss = (pg * m).sum() / m.sum()
        else:
            per_seq = []
            for s in seq.unique():
                sel = seq == s
                tot = (pg[sel] * m[sel]).sum()
                per_seq.append(tot / m[sel].sum() if agg == "seq-mean-token-mean" else tot)
            loss = torch.stack(per_seq).mean()
        loss.backward()
        save(f"policy_out_{agg}.safetensors", {"loss": loss.detach().float().reshape(1), "dlogits": x.grad.float()})


def pgpo_weights(s, valid, tau=0.4, beta=2.0, eps=1e-8):
    st = torch.log1p(s[valid])
    i = (st - st.min()) / (st.max() - st.min() + eps)
    w = torch.where(i < tau, i / (tau + eps), 1 + beta * (i - tau) / (1 - tau + eps))
    out = torch.zeros_like(s)
    out[valid] = torch.ones_like(w) if w.sum() <= 0 else w * valid.sum() / w.sum()
    return out


def advantages_fixture():
    b, l = 6, 9
    rewards = torch.tensor([1.0, 0.1, 0.0, 1.0, 0.9, 0.1])
    group = torch.tensor([0, 0, 0, 1, 1, 2])
    clean = -torch.rand(b, l, dtype=f64) * 3
    blind = clean - torch.rand(b, l, dtype=f64) ** 3 * 2
    mask = torch.ones(b, l)
    mask[1, :3] = 0
    mask[4, 6:] = 0
    adv = torch.zeros(b, dtype=f64)
    for g in group.unique():
        sel = group == g
        r = rewards[sel].to(f64)
        if sel.sum() > 1:
            adv[sel] = (r - r.mean()) / (r.std(unbiased=True) + 1e-6)
    d = (blind - clean).clamp(-20, 20)
    tvd = torch.where(mask > 0, d.exp() - 1 - d, torch.zeros_like(d))
    weights = torch.stack([pgpo_weights(tvd[i], mask[i] > 0) for i in range(b)])
    save("adv_in.safetensors", {"rewards": rewards, "group": group.long(), "logp_clean": clean.float(), "logp_blind": blind.float(), "mask": mask})
    save("adv_out.safetensors", {"adv": adv.float(), "tvd": tvd.float(), "weights": weights.float(), "token_adv": (adv[:, None] * weights).float()})


def rope_fixture():
    b, t, head_dim, theta, section = 2, 11, 16, 1_000_000.0, [2, 3, 3]
    position_ids = torch.randint(0, 20, (3, b, t))
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    inv = inv_freq[None, None, :, None].float().expand(3, b, -1, 1)
    freqs = (inv @ position_ids[:, :, None, :].float()).transpose(2, 3)
    emb = torch.cat((freqs, freqs), dim=-1)
    split = lambda x: torch.cat([m[i % 3] for i, m in enumerate(x.split(section * 2, dim=-1))], dim=-1)
    mcos, msin = split(emb.cos()), split(emb.sin())
    # Vision: rows and columns of a 4 x 6 patch grid; VisionRotaryEmbedding(head_dim // 2).
    rows = torch.arange(4).repeat_interleave(6)
    cols = torch.arange(6).repeat(4)
    dim = head_dim // 2
    vinv = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, dtype=torch.float) / dim))
    table = torch.outer(torch.arange(6, dtype=torch.float), vinv)
    rot = table[torch.stack([rows, cols], -1)].flatten(1)
    vemb = torch.cat((rot, rot), dim=-1)
    save("rope_in.safetensors", {"position_ids": position_ids.float(), "rows": rows.float(), "cols": cols.float()})
    save("rope_out.safetensors", {"mrope_cos": mcos, "mrope_sin": msin, "vision_cos": vemb.cos(), "vision_sin": vemb.sin()})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    kl_fixture()
    policy_fixture()
    advantages_fixture()
    rope_fixture()
    print("fixtures written to", os.path.abspath(OUT))
