//! libjpeg-turbo's "islow" inverse DCT with dequantization (jidctint.c: Loeffler-Ligtenberg-
//! Moschytz, CONST_BITS 13, PASS1_BITS 2), in the arithmetic of its x86 SIMD build
//! (jidctint-avx2.asm, which Pillow's wheels run): 16-bit dequantized inputs and pass-1
//! outputs, saturating packs, a zero-AC shortcut taken for the whole block. For the
//! coefficients real encoders write this equals the C code bit for bit; only corrupt data that
//! overflows 16 bits tells them apart, and then Pillow shows the SIMD result.

const F_0_298: i32 = 2446;
const F_0_390: i32 = 3196;
const F_0_541: i32 = 4433;
const F_0_765: i32 = 6270;
const F_0_899: i32 = 7373;
const F_1_175: i32 = 9633;
const F_1_501: i32 = 12299;
const F_1_847: i32 = 15137;
const F_1_961: i32 = 16069;
const F_2_053: i32 = 16819;
const F_2_562: i32 = 20995;
const F_3_072: i32 = 25172;

#[inline]
fn sat16(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// One 1-D pass over eight 16-bit inputs, descaled by `shift` and saturated to 16 bits.
#[inline(always)]
fn pass(x: [i16; 8], shift: u32) -> [i16; 8] {
    let w = |i: usize| i32::from(x[i]);
    // Even part. The SIMD code folds z1 = (z2 + z3) * 0.541 into two products per output.
    let tmp3 = w(2) * (F_0_541 + F_0_765) + w(6) * F_0_541;
    let tmp2 = w(2) * F_0_541 + w(6) * (F_0_541 - F_1_847);
    let tmp0 = i32::from(x[0].wrapping_add(x[4])) << 13;
    let tmp1 = i32::from(x[0].wrapping_sub(x[4])) << 13;
    let tmp10 = tmp0.wrapping_add(tmp3);
    let tmp13 = tmp0.wrapping_sub(tmp3);
    let tmp11 = tmp1.wrapping_add(tmp2);
    let tmp12 = tmp1.wrapping_sub(tmp2);
    // Odd part: z3 = in7 + in3 and z4 = in5 + in1 are 16-bit sums in the SIMD code.
    let z3 = i32::from(x[7].wrapping_add(x[3]));
    let z4 = i32::from(x[5].wrapping_add(x[1]));
    let z3p = z3 * (F_1_175 - F_1_961) + z4 * F_1_175;
    let z4p = z3 * F_1_175 + z4 * (F_1_175 - F_0_390);
    let o0 = (w(7) * (F_0_298 - F_0_899) + w(1) * -F_0_899).wrapping_add(z3p);
    let o1 = (w(5) * (F_2_053 - F_2_562) + w(3) * -F_2_562).wrapping_add(z4p);
    let o3 = (w(7) * -F_0_899 + w(1) * (F_1_501 - F_0_899)).wrapping_add(z4p);
    let o2 = (w(5) * -F_2_562 + w(3) * (F_3_072 - F_2_562)).wrapping_add(z3p);
    let round = 1i32 << (shift - 1);
    let d = |v: i32| sat16(v.wrapping_add(round) >> shift);
    [
        d(tmp10.wrapping_add(o3)),
        d(tmp11.wrapping_add(o2)),
        d(tmp12.wrapping_add(o1)),
        d(tmp13.wrapping_add(o0)),
        d(tmp13.wrapping_sub(o0)),
        d(tmp12.wrapping_sub(o1)),
        d(tmp11.wrapping_sub(o2)),
        d(tmp10.wrapping_sub(o3)),
    ]
}

/// `pass` on eight vectors at once: `x[k][lane]` is input k of lane `lane`. Branch-free, so
/// the compiler runs the lanes in SIMD registers.
#[inline(always)]
fn pass8(x: &[[i16; 8]; 8], shift: u32) -> [[i16; 8]; 8] {
    let mut o = [[0i16; 8]; 8];
    for l in 0..8 {
        let r = pass(std::array::from_fn(|k| x[k][l]), shift);
        for k in 0..8 {
            o[k][l] = r[k];
        }
    }
    o
}

#[inline(always)]
fn to_sample(v: i16) -> u8 {
    (i32::from(v).clamp(-128, 127) + 128) as u8
}

/// Dequantizes `coef` (natural order) with `q` and writes the 8x8 samples to
/// `out[at + row * stride + col]`.
pub(super) fn islow(coef: &[i16; 64], q: &[u16; 64], out: &mut [u8], at: usize, stride: usize) {
    // pmullw: the product's low 16 bits.
    let deq: [[i16; 8]; 8] = std::array::from_fn(|r| std::array::from_fn(|c| coef[r * 8 + c].wrapping_mul(q[r * 8 + c] as i16)));
    if coef[8..].iter().all(|&c| c == 0) {
        // The SIMD shortcut: rows 1..7 all zero, so every workspace row is the first
        // coefficient row << PASS1_BITS (a 16-bit shift, wrapping), and so is every output row.
        let row = pass(std::array::from_fn(|c| deq[0][c].wrapping_shl(2)), 18);
        let samples: [u8; 8] = std::array::from_fn(|c| to_sample(row[c]));
        for r in 0..8 {
            out[at + r * stride..at + r * stride + 8].copy_from_slice(&samples);
        }
        return;
    }
    // Pass 1 over columns: workspace row k = output k of every column.
    let ws = pass8(&deq, 11);
    // Pass 2 over rows: transpose so the lanes are rows.
    let t: [[i16; 8]; 8] = std::array::from_fn(|j| std::array::from_fn(|r| ws[r][j]));
    let res = pass8(&t, 18);
    for r in 0..8 {
        let dst = &mut out[at + r * stride..at + r * stride + 8];
        for (k, d) in dst.iter_mut().enumerate() {
            *d = to_sample(res[k][r]);
        }
    }
}
