//! Products with a bf16 or f16 operand (a weight kept in its stored dtype): the half operand
//! is widened to f32 one panel at a time (rows of op(A), columns of op(B), about 4 MB of f32
//! each), and gemm multiplies each panel pair into its block of C. So a [151936, 2048] bf16
//! LM head costs 4 MB of scratch, not a 1.2 GB f32 copy. Widening is exact, so the products
//! equal those of the f32 kernel on the widened values up to gemm's blocking.

use super::matmul::{MatmulDims, Operand};
use rayon::prelude::*;

/// f32 values per widened panel.
const PANEL: usize = 1 << 20;

/// One operand panel ready for gemm: a pointer and the (column, row) strides of op(X).
struct Panel {
    ptr: *const f32,
    cs: isize,
    rs: isize,
}

/// Widens `bits[index(e)]` for e = 0, 1, ... into `dst`.
fn widen_into(dst: &mut [f32], bits: &[u16], dtype: crate::tensor::Dtype, index: impl Fn(usize) -> usize + Sync) {
    const TASK: usize = 1 << 14;
    dst.par_chunks_mut(TASK).enumerate().for_each(|(c, out)| {
        for (o, v) in out.iter_mut().enumerate() {
            *v = dtype.widen(bits[index(c * TASK + o)]);
        }
    });
}

/// Rows [i0, i0 + rows) of op(A) [m, k] of the batch matrix at `base`, widened into `scratch`
/// ([rows, k] row-major) when half.
fn a_panel(a: Operand<'_>, base: usize, d: &MatmulDims, i0: usize, rows: usize, scratch: &mut Vec<f32>) -> Panel {
    let (m, k) = (d.m, d.k);
    match a {
        Operand::F32(x) if d.trans_a => Panel { ptr: x[base + i0..].as_ptr(), cs: m as isize, rs: 1 },
        Operand::F32(x) => Panel { ptr: x[base + i0 * k..].as_ptr(), cs: 1, rs: k as isize },
        Operand::Half(bits, dt) => {
            scratch.resize(rows * k, 0.0);
            if d.trans_a {
                widen_into(scratch, bits, dt, |e| base + (e % k) * m + i0 + e / k);
            } else {
                widen_into(scratch, bits, dt, |e| base + i0 * k + e);
            }
            Panel { ptr: scratch.as_ptr(), cs: 1, rs: k as isize }
        }
    }
}

/// Columns [j0, j0 + cols) of op(B) [k, n] of the batch matrix at `base`, widened into
/// `scratch` when half ([cols, k] row-major when B is transposed, else [k, cols]).
fn b_panel(b: Operand<'_>, base: usize, d: &MatmulDims, j0: usize, cols: usize, scratch: &mut Vec<f32>) -> Panel {
    let (n, k) = (d.n, d.k);
    match b {
        Operand::F32(x) if d.trans_b => Panel { ptr: x[base + j0 * k..].as_ptr(), cs: k as isize, rs: 1 },
        Operand::F32(x) => Panel { ptr: x[base + j0..].as_ptr(), cs: 1, rs: n as isize },
        Operand::Half(bits, dt) => {
            scratch.resize(cols * k, 0.0);
            if d.trans_b {
                widen_into(scratch, bits, dt, |e| base + j0 * k + e);
                Panel { ptr: scratch.as_ptr(), cs: k as isize, rs: 1 }
            } else {
                widen_into(scratch, bits, dt, |e| base + (e / cols) * n + j0 + e % cols);
                Panel { ptr: scratch.as_ptr(), cs: 1, rs: cols as isize }
            }
        }
    }
}

/// out (+)= op(A) · op(B) with at least one operand half.
///
/// # Safety
/// As `matmul::matmul_acc`: `out` holds batch * m * n values (read when accumulating), and
/// the operands hold every batch matrix under the strides of `d`.
pub(super) unsafe fn by_panels(a: Operand<'_>, b: Operand<'_>, d: MatmulDims, out: *mut f32, accumulate: bool) {
    let MatmulDims { batch, m, n, k, a_stride, b_stride, .. } = d;
    if m == 0 || n == 0 || batch == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            // SAFETY: out holds batch * m * n values; all-zero bits are 0.0.
            unsafe { std::ptr::write_bytes(out, 0, batch * m * n) };
        }
        return;
    }
    let step = (PANEL / k).max(1);
    let row_step = if matches!(a, Operand::Half(..)) { step } else { m };
    let col_step = if matches!(b, Operand::Half(..)) { step } else { n };
    let (mut a_scratch, mut b_scratch) = (Vec::new(), Vec::new());
    let threads = rayon::current_num_threads();
    for z in 0..batch {
        for i0 in (0..m).step_by(row_step) {
            let rows = row_step.min(m - i0);
            let pa = a_panel(a, z * a_stride, &d, i0, rows, &mut a_scratch);
            for j0 in (0..n).step_by(col_step) {
                let cols = col_step.min(n - j0);
                let pb = b_panel(b, z * b_stride, &d, j0, cols, &mut b_scratch);
                let parallel = if rows * cols * k >= 1 << 15 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
                // SAFETY: the panels point into the operands (or scratch) with strides that stay
                // inside them; block (i0, j0) of matrix z lies inside out.
                unsafe {
                    let c = out.add(z * m * n + i0 * n + j0);
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    gemm::gemm(rows, cols, k, c, 1, n as isize, accumulate, pa.ptr, pa.cs, pa.rs, pb.ptr, pb.cs, pb.rs, beta, 1.0, false, false, false, parallel);
                }
            }
        }
    }
}
