//! Empty responses (a rollout that stops at once, or a padded row with no tokens) flow through
//! the reward, the group advantages, the PGPO weights and the policy loss as zeros: finite,
//! never NaN, never a panic, and without disturbing the other responses of the batch.

mod common;

use pgpo::ops::{self, LossConfig, TokenInputs, Variant, WeightConfig};
use pgpo::rl::advantages::grpo_advantages;
use pgpo::rl::policy::{aggregation_weights, Aggregation};
use pgpo::rl::rewards::{reward, RewardConfig};
use pgpo::Tensor;

#[test]
fn an_empty_response_scores_zero() {
    let c = RewardConfig { accuracy_weight: 0.9, format_weight: 0.1 };
    for text in ["", " ", "\n", "<|im_end|>", "\\boxed{}", "\\boxed{"] {
        let r = reward(text, "4", &c);
        assert_eq!((r.accuracy, r.format, r.total), (0.0, 0.0, 0.0), "{text:?}");
    }
}

#[test]
fn a_group_of_empty_responses_has_zero_advantages() {
    let adv = grpo_advantages(&[0.0, 0.0, 0.0, 1.0, 0.0, 0.5], &[0, 0, 0, 1, 1, 1]).unwrap();
    assert!(adv.iter().all(|a| a.is_finite()), "{adv:?}");
    assert_eq!(&adv[..3], &[0.0, 0.0, 0.0]);
    assert!(adv[3] > 0.0 && adv[4] < 0.0);
}

#[test]
fn an_empty_row_gets_zero_pgpo_weights_and_the_others_keep_their_totals() {
    let (b, l) = (3, 7);
    let mut rng = pgpo::rng::Rng::new(3);
    let tvd = rng.vec(b * l, 0.0, 2.0);
    // Row 0 has 5 tokens, row 1 none (an empty response), row 2 all 7.
    let mask: Vec<f32> = (0..b * l).map(|i| match i / l { 0 => f32::from(u8::from(i % l < 5)), 1 => 0.0, _ => 1.0 }).collect();
    for kind in ["cpu", "wgpu", "cuda", "cuda-emu"] {
        let Some(dev) = common::backend(kind) else { continue };
        for variant in [Variant::Paper, Variant::Quantile, Variant::Floor] {
            let c = WeightConfig { tau: 0.5, beta: 1.0, eps: 1e-6, variant, floor: 0.1 };
            let w = ops::pgpo_weights(&Tensor::from_slice(&tvd, &[b, l], &dev).unwrap(), &Tensor::from_slice(&mask, &[b, l], &dev).unwrap(), &c).unwrap().to_vec().unwrap();
            assert!(w.iter().all(|x| x.is_finite()), "{kind} {variant:?}: {w:?}");
            assert!(w[l..2 * l].iter().all(|&x| x == 0.0), "{kind} {variant:?}: the empty row {:?}", &w[l..2 * l]);
            for (row, len) in [(0, 5.0), (2, 7.0)] {
                let total: f32 = w[row * l..(row + 1) * l].iter().zip(&mask[row * l..]).map(|(a, m)| a * m).sum();
                assert!((total - len).abs() < 1e-4, "{kind} {variant:?}: row {row} sums to {total}, not {len}");
            }
        }
    }
}

#[test]
fn a_policy_loss_over_no_tokens_is_zero_and_empty_rows_get_zero_weight() {
    let c = LossConfig { clip_low: 0.2, clip_high: 0.28, dual_clip: 0.0, kl_coef: 0.0, temperature: 1.0 };
    let x = TokenInputs { tokens: &[], old_logp: &[], adv: &[], weight: &[], ref_logp: None };
    let out = ops::policy_loss(&Tensor::from_slice(&[], &[0, 5], &pgpo::Device::Cpu).unwrap(), &x, &c).unwrap();
    assert_eq!((out.loss, out.entropy, out.clip_frac), (0.0, 0.0, 0.0));
    // Aggregation over a batch whose second response is empty (mask all zero).
    let mask = [1.0, 1.0, 0.0, 0.0, 1.0];
    let seq = [0, 0, 1, 1, 2];
    for agg in [Aggregation::TokenMean, Aggregation::SeqMeanTokenMean, Aggregation::SeqMeanTokenSum] {
        let w = aggregation_weights(&mask, Some(&seq), agg).unwrap();
        assert!(w.iter().all(|x| x.is_finite()) && w[2] == 0.0 && w[3] == 0.0, "{agg:?}: {w:?}");
    }
}
