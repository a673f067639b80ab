//! Batched generation with the KV cache: one prefill over the left-padded prompts, then one
//! decode step per token for the sequences still running. Each sequence continues its own
//! M-RoPE positions (transformers' `rope_deltas`: the token after a prompt whose largest
//! position is m sits at m + 1 on all three axes). Sampling runs on the host over the
//! downloaded logits of the last position: greedy, or temperature then top-k then top-p (the
//! order of transformers' logits processors), from one seeded generator.

use super::config::ModelConfig;
use super::forward::{decode_step, forward_cached, ForwardOptions, Keep};
use super::inputs::ModelInputs;
use super::kv_cache::KvCache;
use super::params::ParamVars;
use super::rope_index::rope_index;
use crate::autograd::Var;
use crate::error::{Error, Result};
use crate::rng::Rng;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Sampling {
    /// The most likely token (the first one on ties, like torch's argmax).
    Greedy,
    /// `temperature` > 0; `top_k` 0 keeps every token; `top_p` in (0, 1], 1 keeps every token.
    Sample { temperature: f32, top_p: f32, top_k: usize },
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
    /// Tokens that end a sequence (EOS and any other stop id); the stop token is kept.
    pub stop_ids: Vec<u32>,
    /// Keep every step's logits (to check the cache against a full recompute).
    pub keep_logits: bool,
    /// Tokens never chosen (transformers' `suppress_tokens`), such as the vision markers a
    /// trainer must not see in a response it feeds back. Their log-probs still come from
    /// the full distribution, as with top-k and top-p.
    pub suppress_ids: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions { max_new_tokens: 64, sampling: Sampling::Greedy, seed: 0, stop_ids: Vec::new(), keep_logits: false, suppress_ids: Vec::new() }
    }
}

/// What one sequence produced.
#[derive(Clone, Debug, Default)]
pub struct Completion {
    /// New tokens, the stop token included when one ended the sequence.
    pub tokens: Vec<u32>,
    /// log p(token) under the sampling distribution before truncation: log-softmax of
    /// logits / temperature (temperature 1 for greedy). The RL loss's old log-probs.
    pub logprobs: Vec<f32>,
    /// Ended by a stop id (false: by the length limit).
    pub stopped: bool,
    /// Each step's logits [V], with `keep_logits`.
    pub logits: Vec<Vec<f32>>,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub completions: Vec<Completion>,
}

impl Generation {
    /// transformers' `sequences`: the prompt [B, T] followed by the new tokens, every row as
    /// long as the longest and padded with `pad_id` after its end.
    pub fn sequences(&self, prompt: &ModelInputs, pad_id: u32) -> (usize, Vec<u32>) {
        let n = self.completions.iter().map(|c| c.tokens.len()).max().unwrap_or(0);
        let width = prompt.seq + n;
        let mut out = Vec::with_capacity(prompt.batch * width);
        for (b, c) in self.completions.iter().enumerate() {
            out.extend_from_slice(&prompt.ids[b * prompt.seq..(b + 1) * prompt.seq]);
            out.extend_from_slice(&c.tokens);
            out.extend(std::iter::repeat_n(pad_id, n - c.tokens.len()));
        }
        (width, out)
    }
}

fn check(o: &GenerateOptions) -> Result<()> {
    if let Sampling::Sample { temperature, top_p, .. } = o.sampling {
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::input("temperature", format!("must be a finite number above 0 (use greedy for 0), got {temperature}")));
        }
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(Error::input("top_p", format!("must be in (0, 1], got {top_p}")));
        }
    }
    Ok(())
}

/// Generates up to `max_new_tokens` for every sequence of `x`; `on_token(sequence, token)` is
/// called as each token is chosen (streaming). Runs under no-grad whatever `pv` tracks.
pub fn generate(pv: &ParamVars, c: &ModelConfig, x: &ModelInputs, o: &GenerateOptions, mut on_token: impl FnMut(usize, u32)) -> Result<Generation> {
    check(o)?;
    let capacity = x.seq + o.max_new_tokens.saturating_sub(1);
    if capacity > c.text.max_position_embeddings {
        return Err(Error::input(
            "input_ids",
            format!("{} prompt tokens + {} new ones exceed the model's context of {}", x.seq, o.max_new_tokens, c.text.max_position_embeddings),
        ));
    }
    let mut completions = vec![Completion::default(); x.batch];
    if o.max_new_tokens == 0 {
        return Ok(Generation { completions });
    }
    let embed = pv.get("model.embed_tokens.weight")?;
    let _no_grad = embed.tape().no_grad();
    let mut cache = KvCache::new(&c.text, x.batch, capacity, embed.value().device())?;
    let index = rope_index(x, c.image_token_id, c.vision.spatial_merge_size)?;
    // The next position of each sequence: its prompt's largest position + 1.
    let mut next = index.next_positions(x.batch, x.seq);
    let mut rng = Rng::new(o.seed);
    // Sequences still running, as indices into `completions`, in cache order.
    let mut active: Vec<usize> = (0..x.batch).collect();
    let mut logits = forward_cached(pv, c, x, &ForwardOptions { keep: Keep::Last, ..Default::default() }, Some(&mut cache))?;
    for step in 0..o.max_new_tokens {
        let chosen = choose(&logits, &active, &mut completions, o, &mut rng)?;
        let mut keep = Vec::with_capacity(active.len());
        for (row, (&seq, &token)) in active.iter().zip(&chosen).enumerate() {
            on_token(seq, token);
            if o.stop_ids.contains(&token) {
                completions[seq].stopped = true;
            } else {
                keep.push(row);
            }
        }
        if keep.is_empty() || step + 1 == o.max_new_tokens {
            break;
        }
        if keep.len() < active.len() {
            cache.retain(&keep)?;
        }
        let ids: Vec<u32> = keep.iter().map(|&r| chosen[r]).collect();
        active = keep.iter().map(|&r| active[r]).collect();
        let mut positions = vec![0f32; 3 * active.len()];
        for (i, &seq) in active.iter().enumerate() {
            for a in 0..3 {
                positions[a * active.len() + i] = next[seq] as f32;
            }
            next[seq] += 1;
        }
        logits = decode_step(pv, c, &ids, &positions, &mut cache)?;
    }
    Ok(Generation { completions })
}

/// Picks the next token of every active sequence from logits [active, V] and records it.
fn choose(logits: &Var, active: &[usize], completions: &mut [Completion], o: &GenerateOptions, rng: &mut Rng) -> Result<Vec<u32>> {
    use crate::backend::cpu::fastmath::{exp_shifted, max_argmax};
    use rayon::prelude::*;
    let vocab = logits.shape()[1];
    // Read in place on the CPU; a GPU's logits come down once.
    let value = logits.value();
    let host = match value.as_cpu() {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(value.to_vec()?),
    };
    // One uniform per row, drawn in row order before the rows run in parallel, so a seed
    // gives the same tokens however the rows are scheduled.
    let uniforms: Vec<f32> = match o.sampling {
        Sampling::Greedy => Vec::new(),
        Sampling::Sample { .. } => active.iter().map(|_| rng.uniform()).collect(),
    };
    let picks: Vec<Result<(usize, f32)>> = active
        .par_iter()
        .enumerate()
        .map(|(row, &seq)| {
            let l = &host[row * vocab..(row + 1) * vocab];
            let not_finite = || match l.iter().position(|v| !v.is_finite()) {
                Some(i) => Error::Numeric(format!("generation: logit {i} of sequence {seq} is {} at step {}", l[i], completions[seq].tokens.len())),
                None => Error::Numeric(format!("generation: sequence {seq} has no logits")),
            };
            let (temperature, top_p, top_k) = match o.sampling {
                Sampling::Greedy => return greedy(l, &o.suppress_ids).ok_or_else(not_finite),
                Sampling::Sample { temperature, top_p, top_k } => (temperature, top_p, top_k),
            };
            // Greedy's vector pass: the largest logit, and whether every logit is finite.
            let Some((top, _, true)) = max_argmax(l) else {
                return Err(not_finite());
            };
            let scaled: Vec<f64> = l.iter().map(|&v| f64::from(v) / f64::from(temperature)).collect();
            // Dividing by a temperature above 0 keeps the order: the largest scaled value is
            // the largest logit's, the same f64.
            let max = f64::from(top) / f64::from(temperature);
            // One exp pass: the weights give both the normaliser and the draw.
            let mut weights = vec![0.0; vocab];
            exp_shifted(&scaled, max, &mut weights);
            let log_z = max + weights.iter().sum::<f64>().ln();
            // The candidates: every token, or all but the suppressed ones (the log-prob above
            // is still over the full distribution, as with top-k and top-p).
            let mut allowed = std::borrow::Cow::Borrowed(&scaled[..]);
            if !o.suppress_ids.is_empty() {
                let a = allowed.to_mut();
                for &t in &o.suppress_ids {
                    if let Some(v) = a.get_mut(t as usize) {
                        *v = f64::NEG_INFINITY;
                        weights[t as usize] = 0.0;
                    }
                }
                // Weights relative to the best allowed token, so that suppressing the likely
                // ones cannot underflow every other weight to 0.
                let top = a.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if top > f64::NEG_INFINITY && top < max {
                    exp_shifted(a, top, &mut weights);
                }
            }
            let token = sample(&allowed, &weights, top_k, top_p, uniforms[row]);
            Ok((token, (scaled[token] - log_z) as f32))
        })
        .collect();
    let mut chosen = Vec::with_capacity(active.len());
    for ((row, &seq), pick) in active.iter().enumerate().zip(picks) {
        let (token, logprob) = pick?;
        let c = &mut completions[seq];
        c.tokens.push(token as u32);
        c.logprobs.push(logprob);
        if o.keep_logits {
            c.logits.push(host[row * vocab..(row + 1) * vocab].to_vec());
        }
        chosen.push(token as u32);
    }
    Ok(chosen)
}

/// The most likely token that is not suppressed (the first on ties, like torch's argmax; 0
/// when every token is suppressed) and its log-probability under the full distribution; None
/// when a logit is not finite. Greedy decoding needs no weight vector: one vector pass finds
/// the choice, the maximum and any non-finite logit, one makes the normaliser (f32 exp, f64
/// sum: the same terms the sampling path makes). Only when the best token is suppressed does
/// a second search run, over the others.
fn greedy(l: &[f32], suppress: &[u32]) -> Option<(usize, f32)> {
    use crate::backend::cpu::fastmath::{max_argmax, sum_exp_shifted};
    let (max, mut token, finite) = max_argmax(l)?;
    if !finite {
        return None;
    }
    if suppress.contains(&(token as u32)) {
        let allowed = (0..l.len()).filter(|i| !suppress.contains(&(*i as u32)));
        // The first of the largest allowed values (max_by would keep the last).
        token = allowed.fold(None, |b: Option<usize>, i| if b.is_none_or(|b| l[i] > l[b]) { Some(i) } else { b }).unwrap_or(0);
    }
    let log_z = f64::from(max) + sum_exp_shifted(l, max).ln();
    Some((token, (f64::from(l[token]) - log_z) as f32))
}

/// Top-k, then the smallest most-likely set whose probability reaches top_p, then a draw
/// from it with `uniform`; `weights` are exp(scaled - max), 0 for suppressed tokens.
/// Candidates are taken in descending logit order (ties by id). A rollout step must not sort
/// the whole vocabulary (151,936 tokens for Qwen2.5-VL, per sequence per token): the nucleus
/// is found among the top c tokens by selection, c growing fourfold until it holds top_p of
/// the mass, and only those c are sorted. With neither top-k nor top-p the draw walks the
/// vocabulary in id order, as torch.multinomial does, and nothing is sorted.
fn sample(scaled: &[f64], weights: &[f64], top_k: usize, top_p: f32, uniform: f32) -> usize {
    let vocab = scaled.len();
    let draw = |order: &mut dyn Iterator<Item = usize>, mass: f64| {
        let u = f64::from(uniform) * mass;
        let mut acc = 0.0;
        let mut last = None;
        for i in order {
            if weights[i] == 0.0 {
                continue;
            }
            acc += weights[i];
            last = Some(i);
            if u < acc {
                return i;
            }
        }
        // Rounding left u at the very top: the last candidate with any weight.
        last.unwrap_or(0)
    };
    let limit = if top_k > 0 { top_k.min(vocab) } else { vocab };
    if limit == vocab && top_p >= 1.0 {
        let total = weights.iter().sum();
        return draw(&mut (0..vocab), total);
    }
    let before = |a: &usize, b: &usize| scaled[*b].total_cmp(&scaled[*a]).then(a.cmp(b));
    let mut order: Vec<usize> = (0..vocab).collect();
    if limit < vocab {
        order.select_nth_unstable_by(limit - 1, before);
        order.truncate(limit);
    }
    let total: f64 = order.iter().map(|&i| weights[i]).sum();
    let target = f64::from(top_p) * total;
    let mut c = limit.min(64);
    loop {
        if c < order.len() {
            order.select_nth_unstable_by(c - 1, before);
        }
        order[..c].sort_unstable_by(before);
        let mut mass = 0.0;
        for (n, &i) in order[..c].iter().enumerate() {
            mass += weights[i];
            if mass >= target {
                return draw(&mut order[..=n].iter().copied(), mass);
            }
        }
        if c == order.len() {
            return draw(&mut order.iter().copied(), mass);
        }
        c = (c * 4).min(order.len());
    }
}

#[cfg(test)]
mod tests {
    use super::sample;
    use crate::rng::Rng;

    /// The plain definition: sort everything by logit (ties by id), cut to top-k, keep the
    /// shortest prefix holding top_p of the mass, draw along it.
    fn reference(scaled: &[f64], weights: &[f64], top_k: usize, top_p: f32, uniform: f32) -> usize {
        let mut order: Vec<usize> = (0..scaled.len()).filter(|&i| weights[i] > 0.0).collect();
        if (top_k == 0 || top_k >= scaled.len()) && top_p >= 1.0 {
            // No truncation: the vocabulary in id order.
        } else {
            order.sort_by(|&a, &b| scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b)));
            if top_k > 0 {
                order.truncate(top_k);
            }
            let total: f64 = order.iter().map(|&i| weights[i]).sum();
            let mut mass = 0.0;
            let mut kept = 0;
            while kept < order.len() {
                mass += weights[order[kept]];
                kept += 1;
                if mass >= f64::from(top_p) * total {
                    break;
                }
            }
            order.truncate(kept);
        }
        let mass: f64 = order.iter().map(|&i| weights[i]).sum();
        let u = f64::from(uniform) * mass;
        let mut acc = 0.0;
        for &i in &order {
            acc += weights[i];
            if u < acc {
                return i;
            }
        }
        *order.last().unwrap()
    }

    #[test]
    fn selection_draws_what_a_full_sort_draws() {
        let mut rng = Rng::new(41);
        for &vocab in &[1usize, 5, 63, 64, 65, 300, 1100, 5000] {
            for &(top_k, top_p) in &[(0, 1.0f32), (0, 0.9), (0, 0.3), (0, 0.999), (1, 1.0), (7, 0.8), (70, 1.0), (2000, 0.95)] {
                for spread in [0.5f32, 4.0, 12.0] {
                    // Rounded logits, so ties occur.
                    let scaled: Vec<f64> = (0..vocab).map(|_| f64::from((rng.uniform() * spread * 8.0).round() / 8.0)).collect();
                    let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let mut weights: Vec<f64> = scaled.iter().map(|v| (v - max).exp()).collect();
                    let mut allowed = scaled.clone();
                    if vocab > 3 {
                        // A suppressed token.
                        weights[2] = 0.0;
                        allowed[2] = f64::NEG_INFINITY;
                    }
                    for _ in 0..20 {
                        let u = rng.uniform();
                        let (got, want) = (sample(&allowed, &weights, top_k, top_p, u), reference(&allowed, &weights, top_k, top_p, u));
                        // Exactly the same token: tied logits too must fall in id order.
                        assert_eq!(got, want, "vocab {vocab} top_k {top_k} top_p {top_p} u {u}");
                        assert!(weights[got] > 0.0 || vocab <= 3, "drew a suppressed token");
                    }
                }
            }
        }
    }
}
