//! One reinforcement-learning step, top to bottom as the method reads: draw prompts, roll out
//! G responses each (KV cache, no grad), score them, group advantages and DAPO's dynamic
//! sampling, old log-probs from the rollout policy and blind states from the blind pass (no
//! vision encoder), TVD with `kl_dual_linear`, PGPO token weights, then mini-batches of the
//! fused-linear policy loss (no [N, V] logits) and AdamW with clipping. Each phase is timed.

use super::batch::{self, Item};
use super::trainer::{StepStats, Trainer};
use crate::autograd::{ops as ag, Tape};
use crate::error::{Error, Result};
use super::visual_dependency::visual_dependency;
use crate::model::{forward_shared_hidden, generate, lm_head, GenerateOptions, ParamVars, Recompute, Sampling};
use super::config::RlConfig;
use super::rl_options::{Degenerate, FilterKey, Importance, TvdEstimate, TvdPolicy};
use super::trainer::StepTrace;
use crate::ops::{self, Chunking, LossConfig, TokenInputs, WeightConfig};
use crate::rl::advantages::{dapo_keep, group_advantages};
use crate::rl::policy::aggregation_weights;
use crate::tensor::{memory, Tensor};
use crate::backend::transfers::Transfers;
use std::time::Instant;

/// A sampled response and everything computed about it.
struct Rollout {
    prompt: usize,
    tokens: Vec<u32>,
    old_logp: Vec<f32>,
    reward: f32,
    accuracy: f32,
    /// Per token: inside the final `\boxed{...}` (the visually grounded answer).
    grounded: Vec<bool>,
}

/// Per token of `tokens`, whether its text falls inside the last `\boxed{...}` of the response.
pub(crate) fn grounded_tokens(t: &Trainer, tokens: &[u32]) -> Result<Vec<bool>> {
    let text = t.processor.chat.decode(tokens)?;
    let Some(open) = text.rfind("\\boxed{").map(|i| i + "\\boxed{".len()) else { return Ok(vec![false; tokens.len()]) };
    let close = text[open..].find('}').map_or(text.len(), |i| open + i);
    let mut out = Vec::with_capacity(tokens.len());
    let mut start = 0;
    for k in 1..=tokens.len() {
        let end = t.processor.chat.decode(&tokens[..k])?.len();
        out.push(start < close && end > open);
        start = end;
    }
    Ok(out)
}

pub fn rl_step(t: &mut Trainer, step: usize) -> Result<StepStats> {
    let c = t.cfg.rl.clone();
    let config = t.weights.config.clone();
    let (pad, dev) = (t.processor.pad_id, t.device.clone());
    let mut fields: Vec<(&'static str, f64)> = Vec::new();

    // 1. Draw prompts.
    let items: Vec<Item> = t.next_items(c.prompts)?;

    // 2. Roll out G responses per prompt with the KV cache, no grad. The peak_bytes_* fields
    // are each phase's high-water mark of the bytes tensors hold (all of them, weights too).
    let clock = Instant::now();
    memory::reset_peak();
    let moved = Transfers::now();
    let prompts: Vec<_> = items.iter().flat_map(|i| std::iter::repeat_n(&i.prompt, c.group)).collect();
    let no_tail: Vec<&[u32]> = vec![&[]; prompts.len()];
    let packed = batch::pack(&config, &prompts, &no_tail, pad, &dev)?;
    let frozen_tape = Tape::new();
    let frozen = ParamVars::frozen(&frozen_tape, &t.weights);
    let sampling = Sampling::Sample { temperature: c.temperature, top_p: c.top_p, top_k: c.top_k };
    let o = GenerateOptions { max_new_tokens: c.max_new_tokens, sampling, seed: t.rng.next_u64(), stop_ids: t.processor.stop_ids.clone(), keep_logits: false, suppress_ids: config.vision_token_ids() };
    let generated = match generate(&frozen, &config, &packed.inputs, &o, |_, _| {}) {
        Ok(g) => g,
        // Non-finite logits while sampling: the policy itself is broken; skip and count.
        Err(Error::Numeric(msg)) => {
            let what = format!("{msg}; {}", t.first_non_finite(None));
            t.skip_bad_step(step, what)?;
            fields.extend([("time_rollout", clock.elapsed().as_secs_f64()), ("skipped", 1.0)]);
            return Ok(StepStats { fields, applied: false, trace: None });
        }
        Err(e) => return Err(e),
    };
    fields.extend([("time_rollout", clock.elapsed().as_secs_f64()), ("peak_bytes_rollout", memory::peak() as f64)]);
    transfer_fields(&mut fields, 0, moved.elapsed());

    // 3. Rewards.
    let mut rollouts = Vec::with_capacity(prompts.len());
    for (i, comp) in generated.completions.into_iter().enumerate() {
        let text = t.processor.chat.decode(&comp.tokens)?;
        let r = t.reward(&text, &items[i / c.group].answer);
        let grounded = grounded_tokens(t, &comp.tokens)?;
        rollouts.push(Rollout { prompt: i / c.group, tokens: comp.tokens, old_logp: comp.logprobs, reward: r.total, accuracy: r.accuracy, grounded });
    }
    let n = rollouts.len() as f64;
    fields.push(("reward", rollouts.iter().map(|r| f64::from(r.reward)).sum::<f64>() / n));
    fields.push(("accuracy", rollouts.iter().map(|r| f64::from(r.accuracy)).sum::<f64>() / n));
    fields.push(("response_length", rollouts.iter().map(|r| r.tokens.len() as f64).sum::<f64>() / n));

    // 4. Group advantages (divided by the group's std unless Dr. GRPO); DAPO's dynamic
    // sampling drops groups that are all right or all wrong.
    let group: Vec<i64> = rollouts.iter().map(|r| r.prompt as i64).collect();
    let rewards: Vec<f32> = rollouts.iter().map(|r| r.reward).collect();
    let adv = group_advantages(&rewards, &group, c.scale_rewards)?;
    let keep = if c.dynamic_sampling {
        let score: Vec<f32> = rollouts.iter().map(|r| if c.filter_key == FilterKey::Accuracy { r.accuracy } else { r.reward }).collect();
        dapo_keep(&score, &group)
    } else {
        vec![true; rollouts.len()]
    };
    let kept: Vec<usize> = (0..rollouts.len()).filter(|&i| keep[i] && !rollouts[i].tokens.is_empty()).collect();
    fields.push(("kept_fraction", kept.len() as f64 / n));
    fields.push(("adv_abs_mean", kept.iter().map(|&i| f64::from(adv[i].abs())).sum::<f64>() / kept.len().max(1) as f64));
    let mut trace = StepTrace { rewards: rewards.clone(), kept: kept.clone(), ..Default::default() };
    if kept.is_empty() {
        fields.push(("skipped", 1.0));
        return Ok(StepStats { fields, applied: false, trace: Some(trace) });
    }

    // 5. Old log-probs come from the rollout (the sampling policy at this temperature); the
    // clean and blind final hidden states of the same rows from two teacher-forced passes, no grad.
    // 6. Token visual dependency from both logit rows in one fused pass (`kl_dual`).
    let kept_prompts: Vec<_> = kept.iter().map(|&i| &items[rollouts[i].prompt].prompt).collect();
    let tails: Vec<&[u32]> = kept.iter().map(|&i| rollouts[i].tokens.as_slice()).collect();
    memory::reset_peak();
    let moved = Transfers::now();
    let scored = visual_dependency(&frozen, &t.scoring(), &kept_prompts, &tails, c.temperature)?;
    fields.push(("peak_bytes_scoring", memory::peak() as f64));
    let tvd = tvd_values(&scored.kl, c.tvd)?;
    fields.extend([("time_logprobs", scored.time_clean), ("time_blind_tvd", scored.time_blind)]);
    tvd_fields(&mut fields, &tvd, &tails, kept.iter().map(|&i| rollouts[i].grounded.as_slice()));

    // 7. PGPO token weights per response (1 everywhere for the other algorithms), times the
    // sequence advantage, per mini-batch below.
    let rollout_weights = if c.algo.token_weights() { token_weights(&c, &tvd, &tails, &dev)? } else { vec![1.0; tvd.len()] };
    let old_logp: Vec<f32> = kept.iter().flat_map(|&i| rollouts[i].old_logp.iter().copied()).collect();
    let seq_adv: Vec<f32> = kept.iter().map(|&i| adv[i]).collect();
    transfer_fields(&mut fields, 1, scored.moved_clean);
    transfer_fields(&mut fields, 2, moved.elapsed().minus(&scored.moved_clean));

    // 8. Mini-batches of the fused policy loss; 9. AdamW with gradient clipping. A non-finite
    // mini-batch is skipped; the step counts once as a bad step however many were.
    let clock = Instant::now();
    memory::reset_peak();
    let moved = Transfers::now();
    let loss_cfg = LossConfig { clip_low: c.clip_low, clip_high: c.clip_high, dual_clip: c.dual_clip, kl_coef: c.kl_coef, temperature: c.temperature };
    let starts: Vec<usize> = tails.iter().scan(0, |s, t| {
        let here = *s;
        *s += t.len();
        Some(here)
    }).collect();
    let b = tails.len();
    let (mut loss_sum, mut clip, mut entropy, mut norm, mut updates) = (0.0, 0.0, 0.0, 0.0, 0.0);
    let (mut applied, mut skipped, mut first_bad) = (0usize, 0usize, None::<String>);
    let mut token_adv = vec![0f32; tvd.len()];
    // Each mini-batch's gradient, flattened, for the variance estimate.
    let mut mb_grads: Vec<Vec<f32>> = Vec::new();
    for _ in 0..c.epochs {
        for mb in (0..b).collect::<Vec<_>>().chunks(c.mini_batch) {
            let mb_prompts: Vec<_> = mb.iter().map(|&r| kept_prompts[r]).collect();
            let mb_tails: Vec<&[u32]> = mb.iter().map(|&r| tails[r]).collect();
            // Each distinct prompt runs once and its responses extend it (gradients equal
            // separate full passes: tests/shared_prompt.rs).
            let shared = batch::pack_shared(&config, &mb_prompts, &mb_tails, pad, &dev)?;
            let rows = shared.predicting_rows(&mb_tails);
            let pick = |v: &[f32]| -> Vec<f32> { mb.iter().flat_map(|&r| v[starts[r]..starts[r] + tails[r].len()].iter().copied()).collect() };
            let (mb_tokens, mut mb_old) = (mb_tails.concat(), pick(&old_logp));
            // The current policy's dependency differs from the rollout's once an update applied.
            let mb_weights = if c.algo.token_weights() && c.tvd_policy == TvdPolicy::Current && applied > 0 {
                let tape = Tape::new();
                let now = visual_dependency(&ParamVars::frozen(&tape, &t.weights), &t.scoring(), &mb_prompts, &mb_tails, c.temperature)?;
                token_weights(&c, &tvd_values(&now.kl, c.tvd)?, &mb_tails, &dev)?
            } else {
                pick(&rollout_weights)
            };
            let mb_seq: Vec<i64> = mb.iter().flat_map(|&r| std::iter::repeat_n(r as i64, tails[r].len())).collect();
            let mb_adv: Vec<f32> = mb_seq.iter().zip(&mb_weights).map(|(&r, &w)| seq_adv[r as usize] * w).collect();
            let mut at = 0;
            for &r in mb {
                token_adv[starts[r]..starts[r] + tails[r].len()].copy_from_slice(&mb_adv[at..at + tails[r].len()]);
                at += tails[r].len();
            }
            let ones = vec![1f32; mb_tokens.len()];
            let agg_w = match c.loss_agg.aggregation() {
                None => vec![1.0 / (c.mini_batch * c.max_new_tokens) as f32; mb_tokens.len()],
                Some(agg) => aggregation_weights(&ones, Some(&mb_seq), agg)?,
            };
            let ref_logp = match (&t.reference, c.kl_coef > 0.0) {
                (Some(reference), true) => Some(reference_logp(reference, &config, &shared, &rows, &mb_tokens, &c)?),
                (None, true) => return Err(Error::input("rl.kl_coef", "is above 0 but the trainer holds no reference policy")),
                _ => None,
            };
            let tape = Tape::new();
            let pv = t.training_vars(&tape, c.train_vision);
            // The final hidden states only: the fused loss applies the LM head chunk by
            // chunk, so no [N, V] logits are ever held.
            let hidden = forward_shared_hidden(&pv, &config, &shared.batch(), &rows, t.recompute())?;
            let hidden = t.inject_fault(hidden)?;
            let head = lm_head(&pv, &config)?;
            if c.importance == Importance::Sequence {
                // GSPO: every token's ratio is its response's length-normalised sequence
                // ratio exp(mean(logp - old)), with the gradient of its own log-prob.
                let now = ops::logp_linear(hidden.value(), head.value(), &mb_tokens, c.temperature, Chunking::Auto)?;
                for &r in mb {
                    let idx: Vec<usize> = mb_seq.iter().enumerate().filter(|(_, s)| **s == r as i64).map(|(i, _)| i).collect();
                    let mean = idx.iter().map(|&i| f64::from(now[i] - mb_old[i])).sum::<f64>() / idx.len() as f64;
                    for &i in &idx {
                        mb_old[i] = now[i] - mean as f32;
                    }
                }
            }
            let x = TokenInputs { tokens: &mb_tokens, old_logp: &mb_old, adv: &mb_adv, weight: &agg_w, ref_logp: ref_logp.as_deref() };
            let (loss, fused) = ag::policy_loss_linear(&hidden, head, &x, &loss_cfg, Chunking::Auto)?;
            let out = fused.out;
            let outcome = if out.loss.is_finite() {
                let grads = tape.backward(&loss)?;
                if c.grad_variance {
                    let mut flat = Vec::new();
                    for (_, g) in pv.gradients(&grads) {
                        flat.extend(g.to_vec()?);
                    }
                    mb_grads.push(flat);
                }
                t.try_apply(&pv, &grads, c.lr)?
            } else {
                Err((f64::NAN, format!("the policy loss is {}; {}", out.loss, t.first_non_finite(Some(("the final hidden states", hidden.value()))))))
            };
            match outcome {
                Ok(gn) => {
                    applied += 1;
                    norm += gn;
                }
                Err((gn, what)) => {
                    skipped += 1;
                    norm += gn;
                    first_bad.get_or_insert(what);
                }
            }
            loss_sum += out.loss;
            clip += out.clip_frac;
            entropy += out.entropy;
            updates += 1.0;
        }
    }
    match first_bad {
        Some(what) => t.skip_bad_step(step, format!("{skipped} of {} mini-batches skipped; {what}", applied + skipped))?,
        None => t.bad_steps = 0,
    }
    fields.extend([("time_update", clock.elapsed().as_secs_f64()), ("peak_bytes_update", memory::peak() as f64)]);
    transfer_fields(&mut fields, 3, moved.elapsed());
    fields.push(("grad_variance", gradient_variance(&mb_grads)));
    fields.extend([("loss", loss_sum / updates), ("clip_fraction", clip / updates), ("entropy", entropy / updates), ("grad_norm", norm / updates)]);
    fields.extend([("minibatches_applied", applied as f64), ("minibatches_skipped", skipped as f64), ("skipped", if applied > 0 { 0.0 } else { 1.0 })]);
    trace.responses = kept.iter().map(|&i| (rollouts[i].prompt, rollouts[i].tokens.clone())).collect();
    (trace.seq_adv, trace.tvd, trace.weights, trace.token_adv) = (seq_adv, tvd, rollout_weights, token_adv);
    Ok(StepStats { fields, applied: applied > 0, trace: Some(trace) })
}

/// What drives the weights, per response token, from `kl_dual`'s outputs.
fn tvd_values(kl: &ops::KlDual, which: TvdEstimate) -> Result<Vec<f32>> {
    match which {
        TvdEstimate::K3 => kl.k3.to_vec(),
        TvdEstimate::Kl => kl.kl.to_vec(),
    }
}

/// PGPO's weight of each response token (responses concatenated) from its dependency `tvd`,
/// by the `pgpo_weights` kernel on the device; a degenerate response (every score equal)
/// gets the kernel's uniform weights, or zeros with `rl.degenerate = "zero"`.
pub fn token_weights(c: &RlConfig, tvd: &[f32], tails: &[&[u32]], dev: &crate::device::Device) -> Result<Vec<f32>> {
    let (b, l) = (tails.len(), tails.iter().map(|t| t.len()).max().unwrap_or(0));
    let (mut grid, mut mask) = (vec![0f32; b * l], vec![0f32; b * l]);
    let mut offset = 0;
    for (r, tail) in tails.iter().enumerate() {
        grid[r * l..r * l + tail.len()].copy_from_slice(&tvd[offset..offset + tail.len()]);
        mask[r * l..r * l + tail.len()].fill(1.0);
        offset += tail.len();
    }
    let wc = WeightConfig { tau: c.tau, beta: c.beta, eps: c.eps, variant: c.variant, floor: c.floor };
    let w = ops::pgpo_weights(&Tensor::from_slice(&grid, &[b, l], dev)?, &Tensor::from_slice(&mask, &[b, l], dev)?, &wc)?.to_vec()?;
    let mut out = Vec::with_capacity(tvd.len());
    for (r, tail) in tails.iter().enumerate() {
        let row = &grid[r * l..r * l + tail.len()];
        let degenerate = row.iter().all(|&x| x.to_bits() == row[0].to_bits());
        if degenerate && c.degenerate == Degenerate::Zero {
            out.extend(std::iter::repeat_n(0.0, tail.len()));
        } else {
            out.extend_from_slice(&w[r * l..r * l + tail.len()]);
        }
    }
    Ok(out)
}

/// The frozen reference policy's log-probs of `tokens` at the rows that predict them (the
/// model at the start of RL; for the loss's k3 KL term), through the fused-linear head.
fn reference_logp(reference: &crate::model::Weights, config: &crate::model::ModelConfig, shared: &batch::SharedPack, rows: &[u32], tokens: &[u32], c: &RlConfig) -> Result<Vec<f32>> {
    let tape = Tape::new();
    let pv = ParamVars::frozen(&tape, reference);
    let hidden = forward_shared_hidden(&pv, config, &shared.batch(), rows, Recompute::None)?;
    ops::logp_linear(hidden.value(), lm_head(&pv, config)?.value(), tokens, c.temperature, Chunking::Auto)
}

/// TVD mean, sparsity (the share of tokens below a tenth of their response's largest TVD),
/// and the mean TVD of grounded (answer) tokens against the others.
fn tvd_fields<'a>(fields: &mut Vec<(&'static str, f64)>, tvd: &[f32], tails: &[&[u32]], grounded: impl Iterator<Item = &'a [bool]>) {
    let (mut sum, mut low, mut g_sum, mut g_n, mut o_sum, mut o_n) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut offset = 0;
    for (tail, gr) in tails.iter().zip(grounded) {
        let v = &tvd[offset..offset + tail.len()];
        let max = v.iter().cloned().fold(0f32, f32::max);
        for (k, &x) in v.iter().enumerate() {
            sum += f64::from(x);
            low += if x < 0.1 * max || max == 0.0 { 1.0 } else { 0.0 };
            if gr.get(k).copied().unwrap_or(false) {
                g_sum += f64::from(x);
                g_n += 1.0;
            } else {
                o_sum += f64::from(x);
                o_n += 1.0;
            }
        }
        offset += tail.len();
    }
    let n = tvd.len().max(1) as f64;
    let mean = |s: f64, k: f64| if k > 0.0 { s / k } else { f64::NAN };
    fields.extend([("tvd_mean", sum / n), ("tvd_sparsity", low / n), ("tvd_grounded", mean(g_sum, g_n)), ("tvd_other", mean(o_sum, o_n))]);
}

/// The mean over mini-batches of |g_i - g_mean|^2 / |g_mean|^2 (NaN with fewer than two).
fn gradient_variance(grads: &[Vec<f32>]) -> f64 {
    let k = grads.len();
    if k < 2 || grads.iter().any(|g| g.len() != grads[0].len()) {
        return f64::NAN;
    }
    let n = grads[0].len();
    let mean: Vec<f64> = (0..n).map(|j| grads.iter().map(|g| f64::from(g[j])).sum::<f64>() / k as f64).collect();
    let norm2: f64 = mean.iter().map(|x| x * x).sum();
    let spread: f64 = grads.iter().map(|g| g.iter().zip(&mean).map(|(&a, &m)| (f64::from(a) - m).powi(2)).sum::<f64>()).sum::<f64>() / k as f64;
    if norm2 > 0.0 { spread / norm2 } else { f64::NAN }
}

/// The metrics fields of each phase's host-device traffic (`backend::transfers`), in the
/// order of `Transfers::fields`; the phases of the `time_*` fields. The blind phase runs from
/// the blind pass to the token weights (TVD included).
pub const TRANSFER_FIELDS: [(&str, [&str; 5]); 4] = [
    ("rollout", ["transfers_rollout_host_reads", "transfers_rollout_host_read_bytes", "transfers_rollout_host_writes", "transfers_rollout_host_write_bytes", "transfers_rollout_waits"]),
    ("logprobs", ["transfers_logprobs_host_reads", "transfers_logprobs_host_read_bytes", "transfers_logprobs_host_writes", "transfers_logprobs_host_write_bytes", "transfers_logprobs_waits"]),
    ("blind_tvd", ["transfers_blind_tvd_host_reads", "transfers_blind_tvd_host_read_bytes", "transfers_blind_tvd_host_writes", "transfers_blind_tvd_host_write_bytes", "transfers_blind_tvd_waits"]),
    ("update", ["transfers_update_host_reads", "transfers_update_host_read_bytes", "transfers_update_host_writes", "transfers_update_host_write_bytes", "transfers_update_waits"]),
];

fn transfer_fields(fields: &mut Vec<(&'static str, f64)>, phase: usize, t: Transfers) {
    fields.extend(TRANSFER_FIELDS[phase].1.iter().zip(t.fields()).map(|(n, (_, v))| (*n, v as f64)));
}
