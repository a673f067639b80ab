//! Permuted copy (see shaders/permute.wgsl).

use rayon::prelude::*;

/// out[i] = x[sum_k idx_k(i) * src_strides[k]] over the output shape `dims`. Works a run of
/// the innermost output axis at a time: the source offset of the run's start is found once
/// (divisions per axis), then the run is a strided copy, a plain copy when that axis keeps
/// stride 1 (the head split and merge of attention).
pub fn permute(x: &[f32], dims: &[usize], src_strides: &[usize], out: &mut [f32]) {
    let (Some(&inner), Some(&step)) = (dims.last(), src_strides.last()) else {
        if let (Some(o), Some(v)) = (out.first_mut(), x.first()) {
            *o = *v;
        }
        return;
    };
    if inner == 0 {
        return;
    }
    let rows_per_task = super::rows_per_task(inner);
    out.par_chunks_mut(rows_per_task * inner).enumerate().for_each(|(c, o)| {
        for (r, o) in o.chunks_mut(inner).enumerate() {
            let mut rem = c * rows_per_task + r;
            let mut src = 0;
            for (&d, &s) in dims[..dims.len() - 1].iter().zip(src_strides).rev() {
                src += (rem % d) * s;
                rem /= d;
            }
            if step == 1 {
                o.copy_from_slice(&x[src..src + inner]);
            } else {
                for (j, o) in o.iter_mut().enumerate() {
                    *o = x[src + j * step];
                }
            }
        }
    });
}
