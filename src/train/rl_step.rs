//! One reinforcement-learning step, top to bottom as the method reads: draw prompts, roll out
//! G responses each (KV cache, no grad), score them, group advantages and DAPO's dynamic
//! sampling, old log-probs from the rollout policy and blind logits from the blind pass (no
//! vision encoder), TVD with `kl_dual`, PGPO token weights, then mini-batches of the fused
//! policy loss and AdamW with clipping. Each phase is timed.

use super::batch::{self, Item};
use super::trainer::{StepStats, Trainer};
use crate::autograd::{ops as ag, Tape};
use crate::error::{Error, Result};
use crate::model::rope_index::rope_index;
use crate::model::{extend, forward, forward_cached, generate, Blind, ForwardOptions, GenerateOptions, KvCache, Keep, ParamVars, Sampling};
use crate::model::processor::Prompt;
use crate::ops::{self, KlDual, KlOptions, LossConfig, TokenInputs, Variant, WeightConfig};
use crate::rl::advantages::{dapo_keep, grpo_advantages};
use crate::rl::policy::{aggregation_weights, Aggregation};
use crate::tensor::Tensor;
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

/// The token visual dependency of responses: the clean and the blind logits of every response
/// token from two teacher-forced passes (no grad; the blind pass hides the image tokens from
/// attention and skips the vision tower), and `kl_dual` of the two. Returns it with the
/// seconds of the clean pass and of the blind pass with `kl_dual`.
///
/// Responses to the same prompt share its prefix: each pass runs the prompt once per distinct
/// prompt into a KV cache (the vision tower too, in the clean pass), copies that cache to the
/// prompt's G responses, and scores all response tokens in one extension of it. The logits
/// equal separate full passes (tests/generation.rs checks both against each other).
pub fn visual_dependency(pv: &ParamVars, t: &Trainer, prompts: &[&Prompt], tails: &[&[u32]], temperature: f32) -> Result<(KlDual, f64, f64)> {
    let (config, dev) = (&t.weights.config, &t.device);
    // Distinct prompts (the G responses of a prompt borrow the same item), and each tail's.
    let mut unique: Vec<&Prompt> = Vec::new();
    let of: Vec<usize> = prompts
        .iter()
        .map(|p| match unique.iter().position(|u| std::ptr::eq(*u, *p) || u.ids == p.ids) {
            Some(i) => i,
            None => {
                unique.push(p);
                unique.len() - 1
            }
        })
        .collect();
    let no_tail: Vec<&[u32]> = vec![&[]; unique.len()];
    let packed = batch::pack(config, &unique, &no_tail, t.processor.pad_id, dev)?;
    let x = &packed.inputs;
    let index = rope_index(x, config.image_token_id, config.vision.spatial_merge_size)?;
    let next = index.next_positions(x.batch, x.seq);
    // Tails right-padded to l; the logits of tail token k (k >= 1) come from the extension's
    // row k - 1, those of token 0 from the prompt's last position.
    let l = tails.iter().map(|s| s.len()).max().unwrap_or(0);
    let b = tails.len();
    let (mut ids, mut mask, mut positions) = (vec![t.processor.pad_id; b * l], vec![false; b * l], vec![0f32; 3 * b * l]);
    let (mut rows, mut order) = (Vec::new(), Vec::new());
    for (r, tail) in tails.iter().enumerate() {
        for (k, &tok) in tail.iter().enumerate() {
            ids[r * l + k] = tok;
            mask[r * l + k] = true;
            for a in 0..3 {
                positions[(a * b + r) * l + k] = (next[of[r]] + k as i64) as f32;
            }
            // Rows of [the prompts' last-position logits; extension rows]. Token k >= 1 is
            // predicted by the row of token k - 1, the last one pushed.
            order.push(if k == 0 { of[r] as u32 } else { (unique.len() + rows.len() - 1) as u32 });
            if k + 1 < tail.len() {
                rows.push((r * l + k) as u32);
            }
        }
    }
    let pass = |blind: Option<Blind>| -> Result<crate::tensor::Tensor> {
        let mut cache = KvCache::new(&config.text, unique.len(), x.seq + l, dev)?;
        let first = forward_cached(pv, config, x, &ForwardOptions { keep: Keep::Last, blind }, Some(&mut cache))?;
        cache.retain(&of)?;
        let first = first.value().clone();
        let all = if rows.is_empty() {
            first
        } else {
            let rest = extend(pv, config, &ids, &mask, &positions, l, &mut cache, Some(&rows))?;
            ops::concat(&[&first, rest.value()], 0)?
        };
        ops::gather(&all, &order)
    };
    let tokens: Vec<u32> = tails.concat();
    let clock = Instant::now();
    let clean = pass(None)?;
    clean.device().synchronize()?;
    let t_clean = clock.elapsed().as_secs_f64();
    let clock = Instant::now();
    let blind = pass(Some(Blind { hide_markers: t.cfg.rl.hide_markers }))?;
    let kl = ops::kl_dual(&clean, &blind, &tokens, KlOptions { temperature, d_clamp: t.cfg.rl.d_clamp })?;
    kl.k3.device().synchronize()?;
    Ok((kl, t_clean, clock.elapsed().as_secs_f64()))
}

pub fn rl_step(t: &mut Trainer, step: usize) -> Result<StepStats> {
    let c = t.cfg.rl.clone();
    let config = t.weights.config.clone();
    let (pad, dev) = (t.processor.pad_id, t.device.clone());
    let mut fields: Vec<(&'static str, f64)> = Vec::new();

    // 1. Draw prompts.
    let items: Vec<Item> = t.next_items(c.prompts)?;

    // 2. Roll out G responses per prompt with the KV cache, no grad.
    let clock = Instant::now();
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
            return Ok(StepStats { fields, applied: false });
        }
        Err(e) => return Err(e),
    };
    fields.push(("time_rollout", clock.elapsed().as_secs_f64()));

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

    // 4. Group advantages; DAPO's dynamic sampling drops groups that are all right or all wrong.
    let group: Vec<i64> = rollouts.iter().map(|r| r.prompt as i64).collect();
    let rewards: Vec<f32> = rollouts.iter().map(|r| r.reward).collect();
    let adv = grpo_advantages(&rewards, &group)?;
    let keep = if c.algo != "grpo" && c.dynamic_sampling {
        let score: Vec<f32> = rollouts.iter().map(|r| if c.filter_key == "accuracy" { r.accuracy } else { r.reward }).collect();
        dapo_keep(&score, &group)
    } else {
        vec![true; rollouts.len()]
    };
    let kept: Vec<usize> = (0..rollouts.len()).filter(|&i| keep[i] && !rollouts[i].tokens.is_empty()).collect();
    fields.push(("kept_fraction", kept.len() as f64 / n));
    if kept.is_empty() {
        fields.push(("skipped", 1.0));
        return Ok(StepStats { fields, applied: false });
    }

    // 5. Old log-probs come from the rollout (the sampling policy at this temperature); the
    // clean and blind logits of the same rows from two teacher-forced passes, no grad.
    // 6. Token visual dependency from both logit rows in one fused pass (`kl_dual`).
    let kept_prompts: Vec<_> = kept.iter().map(|&i| &items[rollouts[i].prompt].prompt).collect();
    let tails: Vec<&[u32]> = kept.iter().map(|&i| rollouts[i].tokens.as_slice()).collect();
    let tokens: Vec<u32> = tails.concat();
    let (kl, t_clean, t_blind) = visual_dependency(&frozen, t, &kept_prompts, &tails, c.temperature)?;
    let tvd = if c.tvd == "kl" { kl.kl.to_vec()? } else { kl.k3.to_vec()? };
    drop(kl);
    fields.extend([("time_logprobs", t_clean), ("time_blind_tvd", t_blind)]);

    // 7. PGPO token weights per response ([B, L], padded), times the sequence advantage.
    let l = tails.iter().map(|t| t.len()).max().unwrap_or(0);
    let (b, mut grid_tvd, mut mask) = (kept.len(), vec![0f32; kept.len() * l], vec![0f32; kept.len() * l]);
    let mut offset = 0;
    for (r, tail) in tails.iter().enumerate() {
        for k in 0..tail.len() {
            grid_tvd[r * l + k] = tvd[offset + k];
            mask[r * l + k] = 1.0;
        }
        offset += tail.len();
    }
    let weights = if c.algo == "pgpo" {
        let wc = WeightConfig { tau: c.tau, beta: c.beta, eps: c.eps, variant: Variant::parse(&c.variant).unwrap_or(Variant::Paper), floor: c.floor };
        let w = ops::pgpo_weights(&Tensor::from_slice(&grid_tvd, &[b, l], &dev)?, &Tensor::from_slice(&mask, &[b, l], &dev)?, &wc)?;
        w.to_vec()?
    } else {
        mask.clone()
    };
    let mut token_adv = Vec::with_capacity(tokens.len());
    let mut old_logp = Vec::with_capacity(tokens.len());
    let mut seq_of = Vec::with_capacity(tokens.len());
    for (r, &i) in kept.iter().enumerate() {
        for k in 0..rollouts[i].tokens.len() {
            token_adv.push(adv[i] * weights[r * l + k]);
        }
        old_logp.extend_from_slice(&rollouts[i].old_logp);
        seq_of.extend(std::iter::repeat_n(r as i64, rollouts[i].tokens.len()));
    }
    tvd_fields(&mut fields, &tvd, &tails, kept.iter().map(|&i| rollouts[i].grounded.as_slice()));

    // 8. Mini-batches of the fused policy loss; 9. AdamW with gradient clipping.
    let clock = Instant::now();
    let loss_cfg = LossConfig { clip_low: c.clip_low, clip_high: c.clip_high, dual_clip: c.dual_clip, kl_coef: 0.0, temperature: c.temperature };
    let starts: Vec<usize> = tails.iter().scan(0, |s, t| {
        let here = *s;
        *s += t.len();
        Some(here)
    }).collect();
    let (mut loss_sum, mut clip, mut entropy, mut norm, mut updates, mut applied) = (0.0, 0.0, 0.0, 0.0, 0.0, false);
    // Each mini-batch's gradient, flattened, for the variance estimate.
    let mut mb_grads: Vec<Vec<f32>> = Vec::new();
    for _ in 0..c.epochs {
        for mb in (0..b).collect::<Vec<_>>().chunks(c.mini_batch) {
            let mb_prompts: Vec<_> = mb.iter().map(|&r| kept_prompts[r]).collect();
            let mb_tails: Vec<&[u32]> = mb.iter().map(|&r| tails[r]).collect();
            let packed = batch::pack(&config, &mb_prompts, &mb_tails, pad, &dev)?;
            let rows = batch::predicting_rows(&packed.tail_positions);
            let pick = |v: &[f32]| -> Vec<f32> { mb.iter().flat_map(|&r| v[starts[r]..starts[r] + tails[r].len()].iter().copied()).collect() };
            let (mb_tokens, mb_adv, mut mb_old) = (mb_tails.concat(), pick(&token_adv), pick(&old_logp));
            let mb_seq: Vec<i64> = mb.iter().flat_map(|&r| std::iter::repeat_n(r as i64, tails[r].len())).collect();
            let ones = vec![1f32; mb_tokens.len()];
            let agg_w = match c.loss_agg.as_str() {
                "constant" => vec![1.0 / (c.mini_batch * c.max_new_tokens) as f32; mb_tokens.len()],
                _ if c.importance == "sequence" => aggregation_weights(&ones, Some(&mb_seq), Aggregation::SeqMeanTokenMean)?,
                agg => aggregation_weights(&ones, Some(&mb_seq), Aggregation::parse(agg).unwrap_or(Aggregation::TokenMean))?,
            };
            let tape = Tape::new();
            let pv = ParamVars::new(&tape, &t.weights, |n| c.train_vision || !n.starts_with("visual."));
            let logits = forward(&pv, &config, &packed.inputs, &ForwardOptions { keep: Keep::Rows(rows), blind: None })?;
            let logits = t.inject_logits(logits)?;
            if c.importance == "sequence" {
                // GSPO: every token's ratio is its response's length-normalised sequence
                // ratio exp(mean(logp - old)), with the gradient of its own log-prob.
                let now = ops::policy_loss(logits.value(), &TokenInputs { tokens: &mb_tokens, old_logp: &mb_old, adv: &mb_adv, weight: &agg_w, ref_logp: None }, &loss_cfg)?.logp;
                for &r in mb {
                    let idx: Vec<usize> = mb_seq.iter().enumerate().filter(|(_, s)| **s == r as i64).map(|(i, _)| i).collect();
                    let mean = idx.iter().map(|&i| f64::from(now[i] - mb_old[i])).sum::<f64>() / idx.len() as f64;
                    for &i in &idx {
                        mb_old[i] = now[i] - mean as f32;
                    }
                }
            }
            let x = TokenInputs { tokens: &mb_tokens, old_logp: &mb_old, adv: &mb_adv, weight: &agg_w, ref_logp: None };
            let (loss, out) = ag::policy_loss(&logits, &x, &loss_cfg)?;
            let (gn, ok) = if out.loss.is_finite() {
                let grads = tape.backward(&loss)?;
                if c.grad_variance {
                    let mut flat = Vec::new();
                    for (_, g) in pv.gradients(&grads) {
                        flat.extend(g.to_vec()?);
                    }
                    mb_grads.push(flat);
                }
                t.apply(&pv, &grads, c.lr, step)?
            } else {
                let what = format!("the policy loss is {}; {}", out.loss, t.first_non_finite(Some(logits.value())));
                t.skip_bad_step(step, what)?;
                (f64::NAN, false)
            };
            applied |= ok;
            loss_sum += out.loss;
            clip += out.clip_frac;
            entropy += out.entropy;
            norm += gn;
            updates += 1.0;
        }
    }
    fields.push(("time_update", clock.elapsed().as_secs_f64()));
    fields.push(("grad_variance", gradient_variance(&mb_grads)));
    fields.extend([("loss", loss_sum / updates), ("clip_fraction", clip / updates), ("entropy", entropy / updates), ("grad_norm", norm / updates), ("skipped", if applied { 0.0 } else { 1.0 })]);
    Ok(StepStats { fields, applied })
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
