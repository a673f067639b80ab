// Fused dual-pass KL. Per row r of the clean and blind logits [N, V], at temperature T
// (a = clean / T, b = blind / T), in one streaming pass over both rows:
//   logp_clean[r] = a[t] - lse(a),  logp_blind[r] = b[t] - lse(b)   (t = tokens[r])
//   kl[r] = KL(softmax(a) || softmax(b))   (exact over the vocabulary, >= 0)
//   k3[r] = e^d - 1 - d,  d = clamp(logp_blind - logp_clean, -dclamp, dclamp)  (series for |d| < 0.5)
// Exact KL without cancellation. With u = b - a - c, c = b[t] - a[t] (a shift that makes u
// small where the rows differ by a constant), and p = softmax(a):
//   KL = log E_p[e^u] - E_p[u] = log1p(mu + kappa) - mu = kappa + (log1p(x) - x), x = mu + kappa,
// mu = E_p[u], kappa = E_p[k3(u)] >= 0. Every term is accumulated without subtracting nearly
// equal numbers: k3(u) by its series for |u| < 0.5, and otherwise as e_b c2 - e_a c1 (1 + u)
// (= e_a c1 e^u - e_a c1 (1 + u), which also keeps the mass of elements where p underflows).
// The lse form lse(b) - lse(a) - c - mu is used instead where its rounding error, about
// eps (|lse(a)| + |lse(b)| + |c| + |mu|), is the smaller one; the shifted form's is about
// eps (kappa + |mu|)(1 + 1 / (1 + x)), large when the token's shift is far from the mean
// (then x is near -1). Non-finite shifted values (overflow, NaN) also take the lse form.
// The old form E_p[a - b] - lse(a) + lse(b) had an absolute error floor near 2e-6; this one
// holds 1e-3 relative down to KL = 1e-9 (tests/kl_accuracy.rs). Cost on the CPU twin: 1.31x
// the time of the old form at [512, 151936] (77 vs 59 ms; BENCHMARKS.md), for the series, a
// select and one more accumulator per element.
// Non-finite inputs: NaN (or +inf) anywhere in a row makes that row's results NaN; -inf
// logits have probability 0 and add nothing.
// Launch: one workgroup of 256 threads per row (grid folded into (x, y)). Each thread keeps
// online (max_a, sum_a, t_a, max_b, sum_b, r, k) over its strided elements, where t_a = sum
// e_a u and k = sum e_a k3(u) scaled by exp(-r), r = max(max_a, max_b - c); a shared-memory
// tree merges them. Each logit is read once; memory beyond the inputs is O(N).

struct Params { rows: u32, v: u32, inv_t: f32, dclamp: f32, groups_x: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> clean: array<f32>;
@group(0) @binding(1) var<storage, read> blind: array<f32>;
@group(0) @binding(2) var<storage, read_write> logp_clean: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> tokens: array<u32>;
@group(0) @binding(5) var<storage, read_write> logp_blind: array<f32>;
@group(0) @binding(6) var<storage, read_write> kl: array<f32>;
@group(0) @binding(7) var<storage, read_write> k3_out: array<f32>;

// #include "numerics.wgsl"

const LOWEST: f32 = -3.402823e38;

var<workgroup> sma: array<f32, 256>;
var<workgroup> ssa: array<f32, 256>;
var<workgroup> sta: array<f32, 256>;
var<workgroup> smb: array<f32, 256>;
var<workgroup> ssb: array<f32, 256>;
var<workgroup> smr: array<f32, 256>;
var<workgroup> ssk: array<f32, 256>;

// Merges the (max, sums) of slot j into slot i.
fn merge(i: u32, j: u32) {
    let m2 = max(sma[i], sma[j]);
    let r1 = exp(sma[i] - m2);
    let r2 = exp(sma[j] - m2);
    ssa[i] = ssa[i] * r1 + ssa[j] * r2;
    sta[i] = sta[i] * r1 + sta[j] * r2;
    sma[i] = m2;
    let n2 = max(smb[i], smb[j]);
    ssb[i] = ssb[i] * exp(smb[i] - n2) + ssb[j] * exp(smb[j] - n2);
    smb[i] = n2;
    let q2 = max(smr[i], smr[j]);
    ssk[i] = ssk[i] * exp(smr[i] - q2) + ssk[j] * exp(smr[j] - q2);
    smr[i] = q2;
}

@compute @workgroup_size(256)
fn kl_dual(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.v;
    let t = tokens[row];
    let at = clean[base + t] * p.inv_t;
    let bt = blind[base + t] * p.inv_t;
    let c = select(0.0, bt - at, is_finite(bt - at));
    var ma = LOWEST;
    var sa = 0.0;
    var ta = 0.0;
    var mb = LOWEST;
    var sb = 0.0;
    var r = LOWEST;
    var k = 0.0;
    var c1 = 0.0;
    var c2 = 0.0;
    for (var i = lid; i < p.v; i += 256u) {
        let a = clean[base + i] * p.inv_t;
        let b = blind[base + i] * p.inv_t;
        if (a > ma || b > mb) {
            // A maximum moved: rescale the sums and refresh c1 = e^(ma - r), c2 = e^(mb - c - r).
            let na = max(ma, a);
            let nb = max(mb, b);
            let nr = max(r, max(na, nb - c));
            let fa = exp(ma - na);
            sa *= fa;
            ta *= fa;
            sb *= exp(mb - nb);
            k *= exp(r - nr);
            ma = na;
            mb = nb;
            r = nr;
            c1 = exp(ma - r);
            c2 = exp(mb - c - r);
        }
        let ea = exp(a - ma);
        let eb = exp(b - mb);
        let u = b - a - c;
        // Where p is 0 (a = -inf) u is infinite and weighs nothing in the mean.
        let ue = select(u, 0.0, ea == 0.0);
        sa += ea;
        ta += ea * ue;
        sb += eb;
        if (abs(u) < 0.5) { k += ea * c1 * k3_series(u); } else { k += eb * c2 - ea * c1 * (1.0 + ue); }
    }
    sma[lid] = ma; ssa[lid] = sa; sta[lid] = ta; smb[lid] = mb; ssb[lid] = sb; smr[lid] = r; ssk[lid] = k;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) { merge(lid, lid + s); }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let lse_a = sma[0] + log(ssa[0]);
        let lse_b = smb[0] + log(ssb[0]);
        let lc = at - lse_a;
        let lb = bt - lse_b;
        logp_clean[row] = lc;
        logp_blind[row] = lb;
        let mu = sta[0] / ssa[0];
        let kappa = ssk[0] * exp(smr[0] - sma[0]) / ssa[0];
        let x = mu + kappa;
        let shifted = kappa + log1p_minus_x(x);
        // The form with the smaller rounding error (in units of epsilon).
        let err_shifted = (kappa + abs(mu)) * (1.0 + 1.0 / (1.0 + x));
        let err_lse = abs(lse_a) + abs(lse_b) + abs(c) + abs(mu);
        let use_shifted = is_finite(shifted) && 1.0 + x > 0.0 && err_shifted < err_lse;
        var d_kl = select(lse_b - lse_a - c - mu, shifted, use_shifted);
        if (d_kl < 0.0) { d_kl = 0.0; }
        kl[row] = d_kl;
        k3_out[row] = k3(clamp_sym(lb - lc, p.dclamp));
    }
}
