// Fused clipped policy loss with its backward, streaming the vocabulary. Per token row r of
// logits [N, V] (z = logits / T), with packed inputs tok_in[r] = (old_logp, adv, weight,
// ref_logp) and sampled token t:
//   pass 1: lse, and entropy H = lse - sum_v p_v z_v, in one online pass; logp = z_t - lse
//   ratio = exp(logp - old); pg1 = -adv ratio; pg2 = -adv clamp(ratio, 1 - clip_low, 1 + clip_high)
//   loss = max(pg1, pg2), then min(loss, -adv dual_clip) when adv < 0 and dual_clip > 0
//   plus kl_coef k3(ref - logp) when kl_coef > 0 (k3(d) = e^d - 1 - d, series for |d| < 0.5)
//   grad = d loss / d logp (-adv ratio where the unclipped branch is active, minus
//   kl_coef expm1(ref - logp)); a NaN ratio or advantage makes loss and grad NaN.
//   Entropy terms of logits at -inf are 0 (0 log 0 = 0).
//   pass 2: dlogits[r, v] = weight grad (onehot(t) - p_v) / T, written once.
//   tok_out[r] = (loss, logp, entropy, clipped = pg2 > pg1).
// Launch: one workgroup of 256 threads per row (grid folded into (x, y)); each thread keeps
// online (max, sum exp, sum exp z), merged by a shared-memory tree. The logits are read
// twice and the gradient written once; no other [N, V] buffer exists.

struct Params { rows: u32, v: u32, inv_t: f32, clip_low: f32, clip_high: f32, dual_clip: f32, kl_coef: f32, groups_x: u32 }

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> tok_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> tok_out: array<f32>;

// #include "numerics.wgsl"

var<workgroup> pm: array<f32, 256>;
var<workgroup> ps: array<f32, 256>;
var<workgroup> pt: array<f32, 256>;
var<workgroup> coef: f32;
var<workgroup> lse_shared: f32;

@compute @workgroup_size(256)
fn policy_loss(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.v;
    var m = -3.402823e38;
    var s = 0.0;
    var te = 0.0;
    for (var c = lid; c < p.v; c += 256u) {
        let z = logits[base + c] * p.inv_t;
        if (z > m) { let r = exp(m - z); s = s * r + 1.0; te = te * r + z; m = z; }
        else { let e = exp(z - m); s += e; te += select(e * z, 0.0, e == 0.0); }
    }
    pm[lid] = m;
    ps[lid] = s;
    pt[lid] = te;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let m2 = max(pm[lid], pm[lid + k]);
            let r1 = exp(pm[lid] - m2);
            let r2 = exp(pm[lid + k] - m2);
            ps[lid] = ps[lid] * r1 + ps[lid + k] * r2;
            pt[lid] = pt[lid] * r1 + pt[lid + k] * r2;
            pm[lid] = m2;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let lse = pm[0] + log(ps[0]);
        let t = tokens[row];
        let logp = logits[base + t] * p.inv_t - lse;
        let old = tok_in[4u * row];
        let adv = tok_in[4u * row + 1u];
        let weight = tok_in[4u * row + 2u];
        let refp = tok_in[4u * row + 3u];
        let ratio = exp(logp - old);
        let pg1 = -adv * ratio;
        let pg2 = -adv * clamp(ratio, 1.0 - p.clip_low, 1.0 + p.clip_high);
        var loss = pg2;
        var grad = 0.0;
        if (pg1 >= pg2) { loss = pg1; grad = -adv * ratio; }
        if (p.dual_clip > 0.0 && adv < 0.0) {
            let pg3 = -adv * p.dual_clip;
            if (pg3 < loss) { loss = pg3; grad = 0.0; }
        }
        if (is_nan(ratio) || is_nan(adv)) {
            loss = nan_from(row);
            grad = loss;
        }
        if (p.kl_coef > 0.0) {
            let d = refp - logp;
            loss += p.kl_coef * k3(d);
            grad -= p.kl_coef * expm1(d);
        }
        tok_out[4u * row] = loss;
        tok_out[4u * row + 1u] = logp;
        tok_out[4u * row + 2u] = lse - pt[0] / ps[0];
        tok_out[4u * row + 3u] = select(0.0, 1.0, pg2 > pg1);
        coef = weight * grad * p.inv_t;
        lse_shared = lse;
    }
    workgroupBarrier();
    let g = coef;
    let lse = lse_shared;
    let t = tokens[row];
    for (var c = lid; c < p.v; c += 256u) {
        // Skipped only for an exact 0 (weight 0 or a clipped token); a NaN coefficient spreads.
        // Written as !(g == 0): naga compiles != to an ordered comparison, false for NaN.
        var d = 0.0;
        if (!(g == 0.0)) {
            d = -g * exp(logits[base + c] * p.inv_t - lse);
            if (c == t) { d += g; }
        }
        dlogits[base + c] = d;
    }
}
