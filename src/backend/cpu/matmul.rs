//! Batched matmul with transpose flags through the `gemm` crate (see shaders/matmul.wgsl).
//! Transposes are expressed as strides, so no f32 operand is copied.

use crate::tensor::Dtype;

/// Sizes and layout of one batched product; strides are in elements, 0 broadcasts.
#[derive(Clone, Copy, Debug)]
pub struct MatmulDims {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub a_stride: usize,
    pub b_stride: usize,
}

/// One operand's values: f32, or bf16/f16 bit patterns (a weight kept in its stored dtype).
#[derive(Clone, Copy)]
pub enum Operand<'a> {
    F32(&'a [f32]),
    Half(&'a [u16], Dtype),
}

/// out = op(A) · op(B). A bf16 B with few rows of A (a decode step, B transposed) streams
/// B's bits through the few-rows kernel, half the bytes for bit for bit the f32 products;
/// any other half-precision operand is widened one panel at a time (matmul_half.rs).
pub fn matmul(a: Operand<'_>, b: Operand<'_>, d: MatmulDims, out: &mut [f32]) {
    assert!(out.len() >= d.batch * d.m * d.n, "matmul: output of {} for {} elements", out.len(), d.batch * d.m * d.n);
    // SAFETY: out holds batch * m * n elements.
    unsafe { matmul_into(a, b, d, out.as_mut_ptr()) }
}

/// `matmul` into batch * m * n elements at `out`, each written once and none read: the
/// buffer may be uninitialised (see `super::alloc_written`).
///
/// # Safety
/// `out` is valid for writes of batch * m * n elements; a and b hold the batches under
/// the strides of `d` (the op layer checks both).
pub unsafe fn matmul_into(a: Operand<'_>, b: Operand<'_>, d: MatmulDims, out: *mut f32) {
    unsafe { product(a, b, d, out, false) }
}

/// out += op(A) · op(B).
///
/// # Safety
/// As [`matmul_into`], and `out` also readable (it holds the values added to).
pub unsafe fn matmul_acc(a: Operand<'_>, b: Operand<'_>, d: MatmulDims, out: *mut f32) {
    unsafe { product(a, b, d, out, true) }
}

/// # Safety
/// As [`matmul_acc`].
unsafe fn product(a: Operand<'_>, b: Operand<'_>, d: MatmulDims, out: *mut f32, accumulate: bool) {
    let Operand::F32(a) = a else {
        return unsafe { super::matmul_half::by_panels(a, b, d, out, accumulate) };
    };
    if !accumulate && !d.trans_a && few_rows(a, b, d, out) {
        return;
    }
    match b {
        Operand::F32(b) => unsafe { matmul_f32(a, b, d, out, accumulate) },
        Operand::Half(..) => unsafe { super::matmul_half::by_panels(Operand::F32(a), b, d, out, accumulate) },
    }
}

/// # Safety
/// As [`matmul_acc`].
unsafe fn matmul_f32(a: &[f32], b: &[f32], d: MatmulDims, out: *mut f32, accumulate: bool) {
    let MatmulDims { batch, m, n, k, trans_a, trans_b, a_stride, b_stride } = d;
    // (column stride, row stride) of op(A) [m, k] and op(B) [k, n].
    let (a_cs, a_rs) = if trans_a { (m as isize, 1) } else { (1, k as isize) };
    let (b_cs, b_rs) = if trans_b { (k as isize, 1) } else { (1, n as isize) };
    let threads = rayon::current_num_threads();
    for z in 0..batch {
        // SAFETY: matrix z of the output lies inside the caller's batch * m * n.
        let c = unsafe { out.add(z * m * n) };
        if k == 0 {
            // An empty product: c = 0, or c unchanged when accumulating.
            if !accumulate {
                // SAFETY: as above; all-zero bits are 0.0.
                unsafe { std::ptr::write_bytes(c, 0, m * n) };
            }
            continue;
        }
        // SAFETY: the op layer checked that a holds batch strides of a_stride plus one m*k
        // matrix, b likewise; the strides above stay inside them. With read_dst false gemm
        // writes every element of c and reads none; with it (accumulating) c = 1 c + 1 AB.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c,
                1,
                n as isize,
                accumulate,
                a.as_ptr().add(z * a_stride),
                a_cs,
                a_rs,
                b.as_ptr().add(z * b_stride),
                b_cs,
                b_rs,
                if accumulate { 1.0 } else { 0.0 },
                1.0,
                false,
                false,
                false,
                if m * n * k >= 1 << 15 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
            );
        }
    }
}

/// Columns of the output per parallel task of the few-rows kernel: 64 columns of a 512-wide
/// weight are 128 KB of B, enough to amortise a rayon task.
const FEW_ROWS_COLUMNS: usize = 64;

/// The few-rows kernel (matmul_few_rows.rs), its columns split over the thread pool, from an
/// f32 or a bf16 B; false when it does not apply.
fn few_rows(a: &[f32], b: Operand<'_>, d: MatmulDims, out: *mut f32) -> bool {
    use super::matmul_few_rows::{max_rows, takes_bf16, try_matmul, try_matmul_bf16, FewRows};
    use rayon::prelude::*;
    let MatmulDims { batch, m, n, k, trans_b, a_stride, b_stride, .. } = d;
    let (b_rs, b_cs) = if trans_b { (1, k) } else { (n, 1) };
    if m > max_rows(b_rs, b_cs) || k == 0 || !super::fastmath::has_avx2() {
        return false;
    }
    if m == 0 || n == 0 || batch == 0 {
        return true;
    }
    let p = FewRows { m, n: 0, k, a_rs: k, b_rs, b_cs, dst_rs: n, accumulate: false };
    // Pointers as integers, to cross into the pool; each task writes its own columns.
    let (half, b0) = match b {
        Operand::F32(b) => (false, b.as_ptr() as usize),
        Operand::Half(bits, Dtype::BF16) if takes_bf16(m, b_rs) => (true, bits.as_ptr() as usize),
        Operand::Half(..) => return false,
    };
    let (a0, o0) = (a.as_ptr() as usize, out as usize);
    let tasks = n.div_ceil(FEW_ROWS_COLUMNS);
    (0..batch * tasks).into_par_iter().with_min_len(if m * k * FEW_ROWS_COLUMNS < 1 << 15 { tasks } else { 1 }).for_each(|t| {
        let (z, j0) = (t / tasks, t % tasks * FEW_ROWS_COLUMNS);
        let cols = FEW_ROWS_COLUMNS.min(n - j0);
        // SAFETY: the op layer checked a, b and out hold every batch under these strides;
        // column block [j0, j0 + cols) of batch z lies inside them, and no two tasks share one.
        unsafe {
            let a = (a0 as *const f32).add(z * a_stride);
            let o = (o0 as *mut f32).add(z * m * n + j0);
            let p = FewRows { n: cols, ..p };
            if half {
                try_matmul_bf16(a, (b0 as *const u16).add(z * b_stride + j0 * b_cs), o, p);
            } else {
                try_matmul(a, (b0 as *const f32).add(z * b_stride + j0 * b_cs), o, p);
            }
        }
    });
    true
}
