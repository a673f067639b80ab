//! Embedding lookup and its scatter-add backward (see shaders/embedding.wgsl).

use rayon::prelude::*;

/// out[r, :] = table[ids[r], :]; ids were validated against the table.
pub fn gather(table: &[f32], ids: &[u32], d: usize, out: &mut [f32]) {
    out.par_chunks_mut(d.max(1)).zip(ids.par_iter()).for_each(|(o, &id)| {
        let row = id as usize * d;
        o.copy_from_slice(&table[row..row + d]);
    });
}

/// `gather` from a half-precision table (bit patterns), widening each value exactly.
pub fn gather_half(table: &[u16], dtype: crate::tensor::Dtype, ids: &[u32], d: usize, out: &mut [f32]) {
    out.par_chunks_mut(d.max(1)).zip(ids.par_iter()).for_each(|(o, &id)| {
        let row = id as usize * d;
        o.iter_mut().zip(&table[row..row + d]).for_each(|(o, &b)| *o = dtype.widen(b));
    });
}

/// Counting sort of positions by id: row v's positions are order[offsets[v]..offsets[v+1]],
/// ascending, so every backend sums each row in the same order.
pub fn group_by_id(ids: &[u32], vocab: usize) -> (Vec<u32>, Vec<u32>) {
    let mut offsets = vec![0u32; vocab + 1];
    for &id in ids {
        offsets[id as usize + 1] += 1;
    }
    for v in 0..vocab {
        offsets[v + 1] += offsets[v];
    }
    let mut next = offsets.clone();
    let mut order = vec![0u32; ids.len()];
    for (pos, &id) in ids.iter().enumerate() {
        order[next[id as usize] as usize] = pos as u32;
        next[id as usize] += 1;
    }
    (order, offsets)
}

/// dtable[v, :] = sum of dout[r, :] over r with ids[r] = v, in ascending r.
pub fn scatter_add(dout: &[f32], order: &[u32], offsets: &[u32], d: usize, out: &mut [f32]) {
    out.par_chunks_mut(d.max(1)).enumerate().for_each(|(v, o)| {
        o.fill(0.0);
        for &pos in &order[offsets[v] as usize..offsets[v + 1] as usize] {
            let src = &dout[pos as usize * d..(pos as usize + 1) * d];
            for (o, s) in o.iter_mut().zip(src) {
                *o += s;
            }
        }
    });
}
