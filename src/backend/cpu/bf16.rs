//! bf16 copies of f32 buffers whose every value is exactly a bf16 (a weight loaded from a
//! bf16 checkpoint): the few-rows matmul reads those, half the bytes (see
//! matmul_few_rows_avx512.rs).

use rayon::prelude::*;

/// Whether v is exactly a bf16: its low 16 bits are zero.
fn exact(v: f32) -> bool {
    v.to_bits() & 0xffff == 0
}

/// The high 16 bits of every value, when every value is exactly a bf16; None otherwise
/// (found after a few values for an activation or a trained weight) and for an empty buffer.
pub fn bf16_bits(x: &[f32]) -> Option<Box<[u16]>> {
    const PROBE: usize = 64;
    if x.is_empty() || !x[..x.len().min(PROBE)].iter().all(|&v| exact(v)) {
        return None;
    }
    if !x.par_chunks(1 << 16).all(|c| c.iter().all(|&v| exact(v))) {
        return None;
    }
    let mut out = vec![0u16; x.len()];
    out.par_chunks_mut(1 << 16).zip(x.par_chunks(1 << 16)).for_each(|(o, c)| {
        for (o, &v) in o.iter_mut().zip(c) {
            *o = (v.to_bits() >> 16) as u16;
        }
    });
    Some(out.into_boxed_slice())
}
