//! A branch-free f32 exp that loops over slices vectorise into, and the run-time dispatch
//! that compiles the hot row loops a second time for AVX2 + FMA when the CPU has them.

/// exp(x) with relative error below 3e-7 over the f32 range; 0 below -87.3 (including -inf),
/// +inf above 88.4 (including +inf), NaN for NaN (as every backend propagates it).
/// Cody-Waite reduction x = n ln2 + f, |f| <= ln2/2, then a degree-7 polynomial for exp(f)
/// scaled by 2^n through the exponent bits. Meant for the AVX2 + FMA builds below; without
/// FMA hardware `mul_add` is a library call (correct, slower).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    // Adding and subtracting 1.5 * 2^23 rounds to the nearest integer without a branch.
    const ROUND: f32 = 12_582_912.0;
    // Compare-and-select clamps (one maxps/minps each) that keep a NaN: it then flows through
    // the arithmetic below, so exp(NaN) = NaN without a separate test.
    let xc = if x < -87.3 { -87.3 } else { x };
    let xc = if xc > 88.7 { 88.7 } else { xc };
    let k = xc * LOG2E + ROUND;
    let n = k - ROUND;
    let f = n.mul_add(-LN2_LO, n.mul_add(-LN2_HI, xc));
    // Horner with fused multiply-adds: one instruction per coefficient where FMA exists.
    let mut p: f32 = 1.0 / 5040.0;
    for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
        p = p.mul_add(f, c);
    }
    // k's low mantissa bits hold n + 2^22: rebuild 2^n's exponent from them, no float-to-int cast.
    let scale = f32::from_bits(k.to_bits().wrapping_sub(ROUND.to_bits()).wrapping_add(127) << 23);
    // Zero below the range (exp(-inf) = 0), as a multiply so the loop stays branch-free
    // (NaN times 0 stays NaN).
    p * scale * f32::from(u8::from(x >= -87.3))
}

/// x, or 0 where x is subnormal. A gradient entry below f32's smallest normal (1.2e-38) adds
/// nothing a normal one would notice, but fed to a matmul it costs a microcode assist per
/// multiply on Intel cores (a 4x slower backward seen on a Xeon); keeps sign, NaN and inf.
#[inline(always)]
pub fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// The Taylor polynomial of e^d - 1 - d through d^8: relative error below 5e-8 for
/// |d| < 0.5, where the direct form loses digits to cancellation.
#[inline(always)]
pub fn k3_series(d: f32) -> f32 {
    let mut p: f32 = 1.0 / 40320.0;
    for c in [1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5] {
        p = p.mul_add(d, c);
    }
    d * d * p
}

/// k3(d) = e^d - 1 - d (Schulman's KL estimator) without cancellation: the series for
/// |d| < 0.5, the direct form elsewhere (where e^d and 1 + d differ by over 10 %). Relative
/// error below 4e-6 over the f32 range. shaders/kl_dual.wgsl and cuda/common.cuh use the
/// same formula.
#[inline(always)]
pub fn k3(d: f32) -> f32 {
    if d.abs() < 0.5 { k3_series(d) } else { exp(d) - 1.0 - d }
}

/// e^d - 1 without cancellation: d + k3 series for |d| < 0.5, the direct form elsewhere.
#[inline(always)]
pub fn expm1(d: f32) -> f32 {
    if d.abs() < 0.5 { d + k3_series(d) } else { exp(d) - 1.0 }
}

/// log(1 + x) - x without cancellation: for |x| < 0.25, with s = x / (2 + x),
/// log1p(x) = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...) and 2 s - x = -x^2 / (2 + x);
/// relative error below 1e-7 there. The direct form elsewhere.
#[inline(always)]
pub fn log1p_minus_x(x: f32) -> f32 {
    if x.abs() < 0.25 {
        let s = x / (2.0 + x);
        let s2 = s * s;
        let tail = s2.mul_add(s2.mul_add(s2.mul_add(1.0 / 9.0, 1.0 / 7.0), 1.0 / 5.0), 1.0 / 3.0);
        -x * x / (2.0 + x) + 2.0 * s * s2 * tail
    } else {
        x.ln_1p() - x
    }
}

/// The widest instruction set pgpo's own CPU kernels may use, from `PGPO_CPU_ISA`: `avx2`
/// stops below AVX-512, `baseline` uses neither (the loops as on a CPU without them);
/// unset, `best` or empty: whatever the CPU has. It lets one machine test every path, and
/// works around a suspect one. It does not reach `gemm`, which picks its own kernels.
#[cfg(target_arch = "x86_64")]
fn isa_cap() -> u8 {
    use std::sync::OnceLock;
    static CAP: OnceLock<u8> = OnceLock::new();
    *CAP.get_or_init(|| match std::env::var("PGPO_CPU_ISA").as_deref() {
        Ok("baseline") => 0,
        Ok("avx2") => 1,
        Ok("best" | "") | Err(_) => 2,
        Ok(other) => {
            eprintln!("warning: PGPO_CPU_ISA={other} is not one of best, avx2, baseline; using the best the CPU has");
            2
        }
    })
}

/// Whether this CPU runs the AVX2 + FMA builds of the hot loops (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx2() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| isa_cap() >= 1 && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

#[cfg(not(target_arch = "x86_64"))]
pub fn has_avx2() -> bool {
    false
}

/// Whether this CPU runs the AVX-512 (F, VL and BW: every AVX-512 CPU since Skylake-SP)
/// kernels (checked once).
#[cfg(target_arch = "x86_64")]
pub fn has_avx512() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| {
        isa_cap() >= 2 && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") && is_x86_feature_detected!("avx512bw")
    })
}

/// Defines `$name` calling the `#[inline(always)]` function `$body` with the same
/// arguments, compiled for AVX-512 (16 lanes), for AVX2 + FMA (8) or for the baseline, the
/// best the CPU has. The source fixes the order of every operation, so the builds differ
/// in speed only: greedy's log-probability pass over a 32768-token vocabulary (8 rows) took
/// 9 ms instead of 12 of the small model's generation on Zen 5.
macro_rules! dispatch {
    ($vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx512vl,avx512bw,avx2,fma")]
                unsafe fn fast512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if $crate::backend::cpu::fastmath::has_avx512() {
                    // SAFETY: the CPU was checked for AVX-512 F, VL and BW (and so AVX2, FMA).
                    return unsafe { fast512($($arg),*) };
                }
                if $crate::backend::cpu::fastmath::has_avx2() {
                    // SAFETY: the CPU was checked for AVX2 and FMA.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch;

/// out[i] = exp(x[i] - shift) through the f32 `exp` above: softmax weights over a
/// vocabulary, a step of generation for every sequence. Relative error below 1e-6 where
/// x[i] - shift > -8 (the weights a normaliser is made of). glibc's f64 exp is a scalar call
/// per element: 3-4 % of a small model's generation profile.
#[inline(always)]
fn exp_shifted_impl(x: &[f64], shift: f64, out: &mut [f64]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f64::from(exp((v - shift) as f32));
    }
}

dispatch!(pub fn exp_shifted(x: &[f64], shift: f64, out: &mut [f64]) => exp_shifted_impl);

/// The sum over i of exp(x[i] - shift), each term through the f32 `exp` as `exp_shifted`
/// makes it, summed in f64: a softmax normaliser over a vocabulary without the vector of
/// weights (greedy decoding needs only the chosen token's log-probability).
#[inline(always)]
fn sum_exp_shifted_impl(x: &[f32], shift: f32) -> f64 {
    // Eight partial sums, so the f64 adds do not form one dependency chain.
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f64::from(exp(v - shift));
        }
    }
    tail.iter().map(|&v| f64::from(exp(v - shift))).sum::<f64>() + acc.iter().sum::<f64>()
}

dispatch!(pub fn sum_exp_shifted(x: &[f32], shift: f32) -> f64 => sum_exp_shifted_impl);

/// The largest value of `x`, the first index holding it (torch's argmax), and whether every
/// value is finite; None when `x` is empty. Sixteen lanes each keep their own maximum and its
/// first index, so the loop is a compare and two blends per vector instead of a branch per
/// value; the lanes then meet, ties going to the smaller index. With a NaN or an infinity
/// present the maximum and index mean nothing; the flag says so.
#[inline(always)]
fn max_argmax_impl(x: &[f32]) -> Option<(f32, usize, bool)> {
    const L: usize = 16;
    let chunks = x.chunks_exact(L);
    let tail = chunks.remainder();
    let mut best: Option<(f32, usize)> = None;
    // 0 v is 0 for a finite v and NaN for an infinity or a NaN, and a NaN stays in the sum.
    let mut finite = [0f32; L];
    if x.len() >= L {
        let mut max = [f32::NEG_INFINITY; L];
        let mut at: [u32; L] = std::array::from_fn(|j| j as u32);
        for (c, block) in chunks.enumerate() {
            let base = (c * L) as u32;
            for j in 0..L {
                let v = block[j];
                finite[j] += v * 0.0;
                let take = v > max[j];
                max[j] = if take { v } else { max[j] };
                at[j] = if take { base + j as u32 } else { at[j] };
            }
        }
        for (&m, &i) in max.iter().zip(&at) {
            let i = i as usize;
            if best.is_none_or(|(bm, bi)| m > bm || (m == bm && i < bi)) {
                best = Some((m, i));
            }
        }
    }
    let mut ok = finite.iter().all(|&f| f == 0.0);
    let base = x.len() - tail.len();
    for (j, &v) in tail.iter().enumerate() {
        ok &= v.is_finite();
        if best.is_none_or(|(bm, _)| v > bm) {
            best = Some((v, base + j));
        }
    }
    best.map(|(m, i)| (m, i, ok))
}

dispatch!(pub fn max_argmax(x: &[f32]) -> Option<(f32, usize, bool)> => max_argmax_impl);
