// Rotary embedding, rotate-half convention:
//   out[.., i] = x[i] cos[i] + sign * sin[i] * (i < d/2 ? -x[i + d/2] : x[i - d/2])
// x is [B, H, T, D]; cos and sin are [B, T, D] or [T, D] (table_len elements, wrapped).
// sign = -1 gives the backward (the transpose of the rotation). The 1-D, multimodal
// (M-RoPE) and vision 2-D forms differ only in the tables, built on the host.
// Launch: 256 threads per workgroup, one element each (grid folded into (x, y)).

struct Params { n: u32, t: u32, d: u32, heads: u32, table_len: u32, sign: f32, groups_x: u32, pad: u32 }

@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> cos_t: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> sin_t: array<f32>;

@compute @workgroup_size(256)
fn rope(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * p.groups_x + wid.x) * 256u + lid;
    if (e >= p.n) { return; }
    let i = e % p.d;
    let row = e / p.d;
    let ti = row % p.t;
    let b = row / (p.t * p.heads);
    let tab = (b * p.t * p.d + ti * p.d) % p.table_len + i;
    let h2 = p.d / 2u;
    var rot: f32;
    if (i < h2) { rot = -x[e + h2]; } else { rot = x[e - h2]; }
    out[e] = x[e] * cos_t[tab] + rot * p.sign * sin_t[tab];
}
