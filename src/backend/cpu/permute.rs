//! Permuted copy (see shaders/permute.wgsl).

use rayon::prelude::*;

/// out[i] = x[sum_k idx_k(i) * src_strides[k]] over the output shape `dims`.
pub fn permute(x: &[f32], dims: &[usize], src_strides: &[usize], out: &mut [f32]) {
    const CHUNK: usize = super::MIN_ELEMS_PER_TASK;
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        for (j, o) in o.iter_mut().enumerate() {
            let mut rem = c * CHUNK + j;
            let mut src = 0;
            for (&d, &s) in dims.iter().zip(src_strides).rev() {
                src += (rem % d) * s;
                rem /= d;
            }
            *o = x[src];
        }
    });
}
