//! The CPU reference backend: plain, obviously-right loops, parallel over rows with rayon,
//! and matmul through the `gemm` crate. Every GPU kernel is compared against these.

pub mod adamw;
pub mod attention;
pub mod concat;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod fastmath;
pub mod kl_dual;
pub mod matmul;
pub mod permute;
pub mod pgpo_weights;
pub mod policy_loss;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod rowstats;
pub mod softmax;

/// Rows per rayon task for row-wise kernels: enough work to amortise scheduling.
pub(crate) const MIN_ELEMS_PER_TASK: usize = 1 << 14;

/// An output buffer: NaN when poisoning is on, so unwritten elements show.
pub fn alloc(n: usize) -> Vec<f32> {
    vec![if crate::poison_outputs() { f32::NAN } else { 0.0 }; n]
}

/// Rows per parallel chunk for a row length of `cols`.
pub(crate) fn rows_per_task(cols: usize) -> usize {
    (MIN_ELEMS_PER_TASK / cols.max(1)).max(1)
}
