//! The fused-linear losses hold O(chunk x V) beyond their inputs and outputs, never O(N x V):
//! measured with the tensor byte counter (`tensor::memory`), which is process-wide, so this
//! binary holds this one test. Catches a fused op that forms the whole [N, V] logits (or
//! their gradient) at once, and a chunk setting that is ignored.

use pgpo::ops::{self, Chunking, KlOptions, LinearGrads, LossConfig, TokenInputs, Transpose};
use pgpo::rng::Rng;
use pgpo::tensor::memory;
use pgpo::{Device, Tensor};

#[test]
fn fused_losses_hold_one_chunk_of_logits_not_all_of_them() {
    let (n, h, v, chunk) = (512, 16, 4096, 8);
    let dev = Device::Cpu;
    let mut rng = Rng::new(3);
    let hidden = Tensor::from_vec(rng.vec(n * h, -1.0, 1.0), &[n, h], &dev).unwrap();
    let blind = Tensor::from_vec(rng.vec(n * h, -1.0, 1.0), &[n, h], &dev).unwrap();
    let head = Tensor::from_vec(rng.vec(v * h, -0.5, 0.5), &[v, h], &dev).unwrap();
    let tokens: Vec<u32> = (0..n).map(|i| (i * 7919 % v) as u32).collect();
    let (old, adv, weight) = (vec![-8.0f32; n], vec![1.0f32; n], vec![1.0 / n as f32; n]);
    let x = TokenInputs { tokens: &tokens, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
    let all_logits = (n * v * 4) as f64;
    // Outputs: dh [N, H] and dW [V, H]; the chunk's two [chunk, V] blocks come on top.
    let outputs = ((n + v) * h * 4) as f64;
    let chunk_blocks = (2 * chunk * v * 4) as f64;
    let measure = |run: &dyn Fn()| {
        let base = memory::reset_peak();
        run();
        (memory::peak() - base) as f64
    };

    // The signal: the unfused path, through the same kernels, does hold all of the logits.
    let unfused = measure(&|| {
        let logits = ops::matmul(&hidden, &head, Transpose::NT).unwrap();
        drop(ops::policy_loss(&logits, &x, &LossConfig::default()).unwrap());
    });
    assert!(unfused >= 2.0 * all_logits, "the unfused loss held {unfused} B, its logits and gradient are {} B", 2.0 * all_logits);

    let grads = LinearGrads { hidden: true, head: true };
    let fused = measure(&|| drop(ops::policy_loss_linear(&hidden, &head, &x, &LossConfig::default(), grads, Chunking::Rows(chunk)).unwrap()));
    assert!(fused <= outputs + 1.5 * chunk_blocks, "policy_loss_linear held {fused} B: outputs {outputs} B, one chunk {chunk_blocks} B, all logits {all_logits} B");
    let kl = measure(&|| drop(ops::kl_dual_linear(&hidden, &blind, &head, &tokens, KlOptions::default(), Chunking::Rows(chunk)).unwrap()));
    assert!(kl <= 1.5 * chunk_blocks + (16 * n * 4) as f64, "kl_dual_linear held {kl} B, one chunk is {chunk_blocks} B");
    let ce = measure(&|| drop(ops::cross_entropy_linear(&hidden, &head, &tokens, grads, Chunking::Rows(chunk)).unwrap()));
    assert!(ce <= outputs + 1.5 * chunk_blocks, "cross_entropy_linear held {ce} B: outputs {outputs} B, one chunk {chunk_blocks} B");
    println!("unfused {unfused} B, policy_loss_linear {fused} B, kl_dual_linear {kl} B, cross_entropy_linear {ce} B (all logits {all_logits} B)");
}
