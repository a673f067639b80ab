//! The fused attention forward keeps O(T * head_dim) memory per head: measured with a
//! counting allocator at T = 8192 on the CPU, where the score matrix alone would be 256 MiB:
//! beyond its outputs it uses a fixed workspace that does not grow with T.

use pgpo::ops::{attention, AttnOptions};
use pgpo::{Device, Tensor};
#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

/// Bytes allocated at peak by a causal attention forward at T tokens, beyond its outputs.
fn workspace(t: usize, d: usize) -> (usize, usize) {
    let mut rng = pgpo::rng::Rng::new(1);
    let mut mk = || Tensor::from_vec(rng.vec(t * d, -1.0, 1.0), &[1, 1, t, d], &Device::Cpu).unwrap();
    let (q, k, v) = (mk(), mk(), mk());
    let opts = AttnOptions { causal: true, ..Default::default() };
    let ((o, lse), extra) = counting::peak_during(|| attention(&q, &k, &v, &opts).unwrap());
    assert!(o.to_vec().unwrap().iter().all(|x| x.is_finite()));
    let outputs = (o.numel() + lse.numel()) * 4;
    (extra.saturating_sub(outputs), outputs)
}

#[test]
fn attention_forward_at_8192_tokens_allocates_its_outputs_and_a_fixed_workspace() {
    let d = 64;
    // Warm the thread pool and the GEMM's per-thread packing buffers on a small problem.
    workspace(256, d);
    let (small, _) = workspace(2048, d);
    let (large, outputs) = workspace(8192, d);
    let scores = 8192 * 8192 * 4;
    println!("T=8192: outputs {outputs} B, workspace {large} B (T=2048: {small} B); a score matrix would be {scores} B");
    // The workspace (per-task tiles, GEMM packing) does not grow with T: O(T * D) in all.
    assert!(large <= 4 << 20, "workspace {large} B above 4 MiB");
    assert!(large <= small + (256 << 10), "workspace grew with T: {small} B at 2048, {large} B at 8192");
}
