//! Block smoothing (jdcoefct.c decompress_smooth_data): for a progressive file whose scans
//! leave some of the first nine AC coefficients incomplete, libjpeg estimates the missing
//! low-frequency coefficients from the DC values of a 5x5 block neighbourhood (and, when no
//! AC data at all arrived, smooths the DC too). Pillow decodes non-buffered, so this runs once
//! after all scans are read, and only if some coef_bits[1..=9] is still non-zero; a complete
//! progressive file never smooths. The quirks of the original (how rows are counted in the
//! last iMCU row) are kept so the output matches.

use super::frame::Component;
use super::huffman::Block;
use super::idct;

/// Natural-order positions of zigzag coefficients 1..=9.
const Q01: usize = 1;
const Q10: usize = 8;
const Q20: usize = 16;
const Q11: usize = 9;
const Q02: usize = 2;
const Q03: usize = 3;
const Q12: usize = 10;
const Q21: usize = 17;
const Q30: usize = 24;

/// smoothing_ok's test of one component's table: the ten quantizers used must be non-zero.
pub(super) fn quant_ok(q: &[u16; 64]) -> bool {
    [0, Q01, Q10, Q20, Q11, Q02, Q03, Q12, Q21, Q30].iter().all(|&i| q[i] != 0)
}

/// The estimate of one coefficient, rounded and limited to what its missing bits allow.
#[inline]
fn predict(num: i64, q: i64, al: Option<i32>) -> i16 {
    let neg = num < 0;
    let mut pred = (((q << 7) + num.abs()) / (q << 8)) as i32;
    if let Some(al) = al
        && al > 0
        && pred >= 1 << al
    {
        pred = (1 << al) - 1;
    }
    (if neg { pred.wrapping_neg() } else { pred }) as i16
}

/// Smooths and inverse-transforms iMCU row `m` of one component into `out` (the row's
/// samples, `stride` wide). `bits` are the latched coef_bits[0..10] that apply to the row.
#[allow(clippy::too_many_arguments)]
pub(super) fn smooth_row(c: &Component, coefs: &[Block], bits: &[i32; 10], m: usize, imcu_rows: usize, q: &[u16; 64], out: &mut [u8], stride: usize) {
    let last_row = imcu_rows - 1;
    let block_rows = if m < last_row {
        c.v
    } else {
        match c.bh % c.v {
            0 => c.v,
            r => r,
        }
    };
    let change_dc = bits[1..].iter().all(|&b| b == -1);
    let qv = |i: usize| i64::from(q[i]);
    let (q00, q01, q10, q20, q11, q02) = (qv(0), qv(Q01), qv(Q10), qv(Q20), qv(Q11), qv(Q02));
    let (q03, q12, q21, q30) = (qv(Q03), qv(Q12), qv(Q21), qv(Q30));
    let image_block_rows = (block_rows * imcu_rows) as isize;
    let last_col = c.bw - 1;
    let row_at = |r: usize| &coefs[r * c.bw_pad..r * c.bw_pad + c.bw_pad];
    for block_row in 0..block_rows {
        let ibr = (m * block_rows + block_row) as isize;
        let cur = m * c.v + block_row;
        let prev = if ibr > 0 { cur - 1 } else { cur };
        let pprev = if ibr > 1 { cur - 2 } else { prev };
        let next = if ibr < image_block_rows - 1 { cur + 1 } else { cur };
        let nnext = if ibr < image_block_rows - 2 { cur + 2 } else { next };
        let (r1, r2, r3, r4, r5) = (row_at(pprev), row_at(prev), row_at(cur), row_at(next), row_at(nnext));
        let dc = |r: &[Block], i: usize| i32::from(r[i][0]);
        // The 5x5 DC window, DCxy with x the row (0..5) and y the column (0..5).
        let mut w = [[0i32; 5]; 5];
        for (j, r) in [r1, r2, r3, r4, r5].iter().enumerate() {
            w[j] = [dc(r, 0); 5];
        }
        for bn in 0..c.bw {
            let mut ws = r3[bn];
            if bn == 0 && bn < last_col {
                for (j, r) in [r1, r2, r3, r4, r5].iter().enumerate() {
                    w[j][3] = dc(r, 1);
                    w[j][4] = dc(r, 1);
                }
            }
            if bn + 1 < last_col {
                for (j, r) in [r1, r2, r3, r4, r5].iter().enumerate() {
                    w[j][4] = dc(r, bn + 2);
                }
            }
            // DC01..DC25 of jdcoefct.c, row by row.
            let d = |n: usize| w[(n - 1) / 5][(n - 1) % 5];
            let (dc01, dc02, dc03, dc04, dc05) = (d(1), d(2), d(3), d(4), d(5));
            let (dc06, dc07, dc08, dc09, dc10) = (d(6), d(7), d(8), d(9), d(10));
            let (dc11, dc12, dc13, dc14, dc15) = (d(11), d(12), d(13), d(14), d(15));
            let (dc16, dc17, dc18, dc19, dc20) = (d(16), d(17), d(18), d(19), d(20));
            let (dc21, dc22, dc23, dc24, dc25) = (d(21), d(22), d(23), d(24), d(25));
            let al = |k: usize| bits[k];
            if al(1) != 0 && ws[1] == 0 {
                let num = if change_dc {
                    -dc01 - dc02 + dc04 + dc05 - 3 * dc06 + 13 * dc07 - 13 * dc09 + 3 * dc10 - 3 * dc11 + 38 * dc12 - 38 * dc14 + 3 * dc15 - 3 * dc16 + 13 * dc17 - 13 * dc19 + 3 * dc20 - dc21 - dc22 + dc24 + dc25
                } else {
                    -7 * dc11 + 50 * dc12 - 50 * dc14 + 7 * dc15
                };
                ws[1] = predict(q00 * i64::from(num), q01, Some(al(1)));
            }
            if al(2) != 0 && ws[8] == 0 {
                let num = if change_dc {
                    -dc01 - 3 * dc02 - 3 * dc03 - 3 * dc04 - dc05 - dc06 + 13 * dc07 + 38 * dc08 + 13 * dc09 - dc10 + dc16 - 13 * dc17 - 38 * dc18 - 13 * dc19 + dc20 + dc21 + 3 * dc22 + 3 * dc23 + 3 * dc24 + dc25
                } else {
                    -7 * dc03 + 50 * dc08 - 50 * dc18 + 7 * dc23
                };
                ws[8] = predict(q00 * i64::from(num), q10, Some(al(2)));
            }
            if al(3) != 0 && ws[16] == 0 {
                let num = if change_dc {
                    dc03 + 2 * dc07 + 7 * dc08 + 2 * dc09 - 5 * dc12 - 14 * dc13 - 5 * dc14 + 2 * dc17 + 7 * dc18 + 2 * dc19 + dc23
                } else {
                    -dc03 + 13 * dc08 - 24 * dc13 + 13 * dc18 - dc23
                };
                ws[16] = predict(q00 * i64::from(num), q20, Some(al(3)));
            }
            if al(4) != 0 && ws[9] == 0 {
                let num = if change_dc {
                    -dc01 + dc05 + 9 * dc07 - 9 * dc09 - 9 * dc17 + 9 * dc19 + dc21 - dc25
                } else {
                    dc10 + dc16 - 10 * dc17 + 10 * dc19 - dc02 - dc20 + dc22 - dc24 + dc04 - dc06 + 10 * dc07 - 10 * dc09
                };
                ws[9] = predict(q00 * i64::from(num), q11, Some(al(4)));
            }
            if al(5) != 0 && ws[2] == 0 {
                let num = if change_dc {
                    2 * dc07 - 5 * dc08 + 2 * dc09 + dc11 + 7 * dc12 - 14 * dc13 + 7 * dc14 + dc15 + 2 * dc17 - 5 * dc18 + 2 * dc19
                } else {
                    -dc11 + 13 * dc12 - 24 * dc13 + 13 * dc14 - dc15
                };
                ws[2] = predict(q00 * i64::from(num), q02, Some(al(5)));
            }
            if change_dc {
                if al(6) != 0 && ws[3] == 0 {
                    let num = dc07 - dc09 + 2 * dc12 - 2 * dc14 + dc17 - dc19;
                    ws[3] = predict(q00 * i64::from(num), q03, Some(al(6)));
                }
                if al(7) != 0 && ws[10] == 0 {
                    let num = dc07 - 3 * dc08 + dc09 - dc17 + 3 * dc18 - dc19;
                    ws[10] = predict(q00 * i64::from(num), q12, Some(al(7)));
                }
                if al(8) != 0 && ws[17] == 0 {
                    let num = dc07 - dc09 - 3 * dc12 + 3 * dc14 + dc17 - dc19;
                    ws[17] = predict(q00 * i64::from(num), q21, Some(al(8)));
                }
                if al(9) != 0 && ws[24] == 0 {
                    let num = dc07 + 2 * dc08 + dc09 - dc17 - 2 * dc18 - dc19;
                    ws[24] = predict(q00 * i64::from(num), q30, Some(al(9)));
                }
                let num = -2 * dc01 - 6 * dc02 - 8 * dc03 - 6 * dc04 - 2 * dc05 - 6 * dc06 + 6 * dc07 + 42 * dc08 + 6 * dc09 - 6 * dc10 - 8 * dc11 + 42 * dc12 + 152 * dc13 + 42 * dc14 - 8 * dc15 - 6 * dc16 + 6 * dc17 + 42 * dc18 + 6 * dc19 - 6 * dc20 - 2 * dc21 - 6 * dc22 - 8 * dc23 - 6 * dc24 - 2 * dc25;
                ws[0] = predict(q00 * i64::from(num), q00, None);
            }
            idct::islow(&ws, q, out, block_row * 8 * stride + bn * 8, stride);
            for row in w.iter_mut() {
                row.copy_within(1..5, 0);
            }
        }
    }
}
