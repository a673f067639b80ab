//! kl_dual and policy_loss at N = 4096 rows and V = 151,936 (the Qwen2.5 vocabulary) on the
//! CPU, with a counting allocator: beyond their inputs, kl_dual allocates O(N) and
//! policy_loss its dlogits plus O(N). Any [N, V] temporary (2.5 GB) would break the bound.

use pgpo::ops::{kl_dual, policy_loss, KlOptions, LossConfig, TokenInputs};
use pgpo::{Device, Tensor};
#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

const N: usize = 4096;
const V: usize = 151_936;
/// O(N) working space allowed beyond the named outputs: 64 bytes per row, plus 1 MiB.
const SLACK: usize = 64 * N + (1 << 20);

/// Deterministic logits in [-4, 4) without the cost of a random generator.
fn logits(seed: usize) -> Tensor {
    let data: Vec<f32> = (0..N * V).map(|i| ((i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 7) % 8192) as f32 / 1024.0 - 4.0).collect();
    Tensor::from_vec(data, &[N, V], &Device::Cpu).unwrap()
}

#[test]
fn kl_dual_and_policy_loss_at_qwen_vocabulary_allocate_no_n_by_v_temporaries() {
    let tokens: Vec<u32> = (0..N).map(|i| (i * 7919 % V) as u32).collect();
    let nv_bytes = N * V * 4;
    // Warm the thread pool on a small problem so its start-up allocations are not counted.
    let small = Tensor::full(0.5, &[4, 8], &Device::Cpu).unwrap();
    kl_dual(&small, &small, &[1, 2, 3, 4], KlOptions::default()).unwrap();

    let (clean, blind) = (logits(1), logits(2));
    let (out, extra) = counting::peak_during(|| kl_dual(&clean, &blind, &tokens, KlOptions::default()).unwrap());
    println!("kl_dual: {extra} B beyond its {} B of inputs (an [N, V] buffer is {nv_bytes} B)", 2 * nv_bytes);
    assert!(extra <= 4 * N * 4 + SLACK, "kl_dual allocated {extra} B");
    assert!(out.kl.to_vec().unwrap().iter().all(|k| k.is_finite() && *k >= 0.0));
    drop((clean, blind));

    let x = logits(3);
    let old: Vec<f32> = vec![-12.0; N];
    let adv: Vec<f32> = (0..N).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
    let weight = vec![1.0 / N as f32; N];
    let inputs = TokenInputs { tokens: &tokens, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
    let (out, extra) = counting::peak_during(|| policy_loss(&x, &inputs, &LossConfig::default()).unwrap());
    println!("policy_loss: {extra} B beyond its input logits; dlogits is {nv_bytes} B");
    assert!(extra <= nv_bytes + SLACK, "policy_loss allocated {extra} B");
    assert!(out.loss.is_finite());
}
