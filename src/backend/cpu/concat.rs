//! Block copy along one axis, behind concat and slice (see shaders/concat.wgsl).

/// Where a block sits: the axis length of its tensor and the block's offset along it.
#[derive(Clone, Copy, Debug)]
pub struct AxisSpan {
    pub dim: usize,
    pub off: usize,
}

/// dst[o, dst.off + j, r] = src[o, src.off + j, r] for o < outer, j < len, r < inner.
pub fn copy_block(src: &[f32], s: AxisSpan, dst: &mut [f32], d: AxisSpan, outer: usize, len: usize, inner: usize) {
    for o in 0..outer {
        let from = (o * s.dim + s.off) * inner;
        let to = (o * d.dim + d.off) * inner;
        dst[to..to + len * inner].copy_from_slice(&src[from..from + len * inner]);
    }
}
