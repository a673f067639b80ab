// Included where a kernel needs IEEE classes or cancellation-free forms (the same formulas as
// src/backend/cpu/fastmath.rs and cuda/common.cuh). WGSL lets an implementation assume no
// NaN or infinity in float comparisons, so the class tests read the bits.

fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn is_finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }
// A quiet NaN built at run time (a NaN constant expression is a shader-creation error).
fn nan_from(bits: u32) -> f32 { return bitcast<f32>(0x7fc00000u | (bits & 0x3fffffu)); }
// -inf built at run time, for the same reason.
fn neg_inf_from(bits: u32) -> f32 { return bitcast<f32>(0xff800000u | (bits & 0u)); }
// max that returns NaN when either side is NaN (WGSL's max may return the other operand).
fn max_nan(a: f32, b: f32) -> f32 {
    if (is_nan(a)) { return a; }
    if (is_nan(b)) { return b; }
    return max(a, b);
}
// clamp to [-lim, lim] that keeps a NaN.
fn clamp_sym(d: f32, lim: f32) -> f32 { return select(clamp(d, -lim, lim), d, is_nan(d)); }

// e^d - 1 - d through d^8 for |d| < 0.5: relative error below 5e-8 there.
fn k3_series(d: f32) -> f32 {
    var q = 1.0 / 40320.0;
    q = q * d + 1.0 / 5040.0;
    q = q * d + 1.0 / 720.0;
    q = q * d + 1.0 / 120.0;
    q = q * d + 1.0 / 24.0;
    q = q * d + 1.0 / 6.0;
    q = q * d + 0.5;
    return d * d * q;
}
// k3(d) = e^d - 1 - d without cancellation: the series for |d| < 0.5, the direct form elsewhere.
fn k3(d: f32) -> f32 { if (abs(d) < 0.5) { return k3_series(d); } return exp(d) - 1.0 - d; }
fn expm1(d: f32) -> f32 { if (abs(d) < 0.5) { return d + k3_series(d); } return exp(d) - 1.0; }
// log(1 + x) - x: with s = x / (2 + x), 2 atanh(s) - x = -x^2 / (2 + x) + 2 (s^3/3 + s^5/5 + ...)
// for |x| < 0.25; the direct form elsewhere.
fn log1p_minus_x(x: f32) -> f32 {
    if (abs(x) < 0.25) {
        let s = x / (2.0 + x);
        let s2 = s * s;
        let tail = ((s2 * (1.0 / 9.0) + 1.0 / 7.0) * s2 + 1.0 / 5.0) * s2 + 1.0 / 3.0;
        return -x * x / (2.0 + x) + 2.0 * s * s2 * tail;
    }
    return log(1.0 + x) - x;
}
// log(1 + x) to f32 rounding: x + (log1p(x) - x) for |x| < 0.25. (Goldberg's correction,
// log(u) x / (u - 1), relies on a log that WGSL only bounds to 2^-21 absolute near 1.)
fn log1p(x: f32) -> f32 { if (abs(x) < 0.25) { return x + log1p_minus_x(x); } return log(1.0 + x); }
