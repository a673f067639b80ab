//! Batched matmul with transpose flags through the `gemm` crate (see shaders/matmul.wgsl).
//! Transposes are expressed as strides, so no operand is copied.

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

pub fn matmul(a: &[f32], b: &[f32], d: MatmulDims, out: &mut [f32]) {
    let MatmulDims { batch, m, n, k, trans_a, trans_b, a_stride, b_stride } = d;
    // (column stride, row stride) of op(A) [m, k] and op(B) [k, n].
    let (a_cs, a_rs) = if trans_a { (m as isize, 1) } else { (1, k as isize) };
    let (b_cs, b_rs) = if trans_b { (k as isize, 1) } else { (1, n as isize) };
    let threads = rayon::current_num_threads();
    for z in 0..batch {
        let c = &mut out[z * m * n..(z + 1) * m * n];
        if k == 0 {
            c.fill(0.0);
            continue;
        }
        // SAFETY: the op layer checked that a holds batch strides of a_stride plus one m*k
        // matrix, b likewise, and out holds batch*m*n; the strides above stay inside them.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr().add(z * a_stride),
                a_cs,
                a_rs,
                b.as_ptr().add(z * b_stride),
                b_cs,
                b_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                if m * n * k >= 1 << 15 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None },
            );
        }
    }
}
