// Included by softmax.wgsl and cross_entropy.wgsl (which bind the rows as `x`): the row
// statistics (max, sum of exp(x - max)) of x[base .. base + cols] by 256 threads. Each thread
// keeps an online (max, sum) pair over its strided elements; a shared-memory tree merges them.

var<workgroup> pm: array<f32, 256>;
var<workgroup> ps: array<f32, 256>;

fn row_stats(base: u32, cols: u32, lid: u32) -> vec2<f32> {
    var m = -3.402823e38;
    var s = 0.0;
    for (var c = lid; c < cols; c += 256u) {
        let v = x[base + c];
        if (v > m) { s = s * exp(m - v) + 1.0; m = v; } else { s += exp(v - m); }
    }
    pm[lid] = m;
    ps[lid] = s;
    workgroupBarrier();
    for (var k = 128u; k > 0u; k >>= 1u) {
        if (lid < k) {
            let m2 = max(pm[lid], pm[lid + k]);
            ps[lid] = ps[lid] * exp(pm[lid] - m2) + ps[lid + k] * exp(pm[lid + k] - m2);
            pm[lid] = m2;
        }
        workgroupBarrier();
    }
    return vec2<f32>(pm[0], ps[0]);
}
