// Fused dual-pass KL. Per row r of the clean and blind logits [N, V], at temperature T
// (a = clean / T, b = blind / T), in one streaming pass over both rows:
//   logp_clean[r] = a[t] - lse(a),  logp_blind[r] = b[t] - lse(b)   (t = tokens[r])
//   kl[r] = KL(softmax(a) || softmax(b)) = sum_v p_a (a - b) - lse(a) + lse(b)  (exact, >= 0)
//   k3[r] = exp(d) - 1 - d,  d = clamp(logp_blind - logp_clean, -dclamp, dclamp)
// Launch: one workgroup of 256 threads per row (grid folded into (x, y)). Each thread keeps
// online (max_a, sum_a, t_a, max_b, sum_b) with t_a = sum exp(a - max_a) (a - b) over its
// strided elements; a shared-memory tree merges them. Each logit is read once; nothing of
// size V is written: memory beyond the inputs is O(N).

struct Params { rows: u32, v: u32, inv_t: f32, dclamp: f32, groups_x: u32, pad0: u32, pad1: u32, pad2: u32 }

@group(0) @binding(0) var<storage, read> clean: array<f32>;
@group(0) @binding(1) var<storage, read> blind: array<f32>;
@group(0) @binding(2) var<storage, read_write> logp_clean: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> tokens: array<u32>;
@group(0) @binding(5) var<storage, read_write> logp_blind: array<f32>;
@group(0) @binding(6) var<storage, read_write> kl: array<f32>;
@group(0) @binding(7) var<storage, read_write> k3: array<f32>;

const NEG: f32 = -3.402823e38;

var<workgroup> sma: array<f32, 256>;
var<workgroup> ssa: array<f32, 256>;
var<workgroup> sta: array<f32, 256>;
var<workgroup> smb: array<f32, 256>;
var<workgroup> ssb: array<f32, 256>;

@compute @workgroup_size(256)
fn kl_dual(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * p.groups_x + wid.x;
    if (row >= p.rows) { return; }
    let base = row * p.v;
    var ma = NEG;
    var sa = 0.0;
    var ta = 0.0;
    var mb = NEG;
    var sb = 0.0;
    for (var c = lid; c < p.v; c += 256u) {
        let a = clean[base + c] * p.inv_t;
        let b = blind[base + c] * p.inv_t;
        if (a > ma) { let r = exp(ma - a); sa = sa * r + 1.0; ta = ta * r + (a - b); ma = a; }
        else { let e = exp(a - ma); sa += e; ta += e * (a - b); }
        if (b > mb) { sb = sb * exp(mb - b) + 1.0; mb = b; } else { sb += exp(b - mb); }
    }
    sma[lid] = ma; ssa[lid] = sa; sta[lid] = ta; smb[lid] = mb; ssb[lid] = sb;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let m2 = max(sma[lid], sma[lid + k]);
            let r1 = exp(sma[lid] - m2);
            let r2 = exp(sma[lid + k] - m2);
            ssa[lid] = ssa[lid] * r1 + ssa[lid + k] * r2;
            sta[lid] = sta[lid] * r1 + sta[lid + k] * r2;
            sma[lid] = m2;
            let n2 = max(smb[lid], smb[lid + k]);
            ssb[lid] = ssb[lid] * exp(smb[lid] - n2) + ssb[lid + k] * exp(smb[lid + k] - n2);
            smb[lid] = n2;
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        let lse_a = sma[0] + log(ssa[0]);
        let lse_b = smb[0] + log(ssb[0]);
        let t = tokens[row];
        let lc = clean[base + t] * p.inv_t - lse_a;
        let lb = blind[base + t] * p.inv_t - lse_b;
        logp_clean[row] = lc;
        logp_blind[row] = lb;
        kl[row] = max(sta[0] / ssa[0] - lse_a + lse_b, 0.0);
        let d = clamp(lb - lc, -p.dclamp, p.dclamp);
        k3[row] = exp(d) - 1.0 - d;
    }
}
