//! YCbCr -> RGB with jdcolor.c's fixed-point tables (build_ycc_rgb_table: SCALEBITS 16,
//! FIX(1.40200), FIX(1.77200), FIX(0.71414), FIX(0.34414), the rounding half folded into the
//! Cb->G table) and its clamp to 0..255 (range_limit).

const ONE_HALF: i32 = 1 << 15;
const FIX_1_40200: i32 = 91881;
const FIX_1_77200: i32 = 116130;
const FIX_0_71414: i32 = 46802;
const FIX_0_34414: i32 = 22554;

#[inline(always)]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// ycc_rgb_convert for one row. The table entries are computed inline (the same integer
/// expressions build_ycc_rgb_table stores), which lets the compiler vectorize the loop.
pub(super) fn ycc_row(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (((o, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
        o[0] = clamp(y + ((FIX_1_40200 * cr + ONE_HALF) >> 16));
        o[1] = clamp(y + ((-FIX_0_34414 * cb + ONE_HALF - FIX_0_71414 * cr) >> 16));
        o[2] = clamp(y + ((FIX_1_77200 * cb + ONE_HALF) >> 16));
    }
}

/// rgb_rgb_convert (Adobe transform 0 or R/G/B component ids).
pub(super) fn rgb_row(r: &[u8], g: &[u8], b: &[u8], out: &mut [u8]) {
    for (((o, &r), &g), &b) in out.chunks_exact_mut(3).zip(r).zip(g).zip(b) {
        o[0] = r;
        o[1] = g;
        o[2] = b;
    }
}

/// Greyscale, replicated the way Pillow's convert("RGB") does for an "L" image.
pub(super) fn gray_row(y: &[u8], out: &mut [u8]) {
    for (o, &y) in out.chunks_exact_mut(3).zip(y) {
        o.fill(y);
    }
}
