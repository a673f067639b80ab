//! Naive f64 references: the definitions each kernel is checked against, written as plain
//! loops with no blocking, streaming or fusion. Backward kernels are checked against
//! central finite differences of these forwards (`finite_difference`).

use crate::backend::cpu::attention::{AttnDims, AttnMasks};

/// erf by its Taylor series, a method independent of the kernels' rational approximation.
pub fn erf_series(x: f64) -> f64 {
    if x.abs() > 5.0 {
        return x.signum();
    }
    let (mut term, mut sum) = (x, x);
    for k in 1..200 {
        term *= -x * x / k as f64;
        sum += term / (2 * k + 1) as f64;
    }
    sum * 2.0 / std::f64::consts::PI.sqrt()
}

/// Inverted dropout as specified: element i kept when lowbias32(i xor lowbias32(seed)), the
/// hash written out here in 64-bit arithmetic, is at least round(p * 2^32); kept values
/// scaled by 1 / (1 - p), dropped ones multiplied by 0.
pub fn dropout(x: &[f64], p: f64, seed: u32) -> Vec<f64> {
    let hash = |v: u64| {
        let m = 0xffff_ffffu64;
        let mut h = v & m;
        h ^= h >> 16;
        h = (h * 0x7feb_352d) & m;
        h ^= h >> 15;
        h = (h * 0x846c_a68b) & m;
        h ^ (h >> 16)
    };
    let threshold = (p * 4_294_967_296.0).round().min(4_294_967_295.0) as u64;
    let s = hash(u64::from(seed));
    x.iter().enumerate().map(|(i, &v)| v * if hash(i as u64 ^ s) >= threshold { 1.0 / (1.0 - p) } else { 0.0 }).collect()
}

pub fn silu(x: f64) -> f64 {
    x / (1.0 + (-x).exp())
}

pub fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
}

pub fn gelu_erf(x: f64) -> f64 {
    0.5 * x * (1.0 + erf_series(x / 2f64.sqrt()))
}

/// log sum exp of the row; NaN if any entry is NaN or +inf (as PyTorch's softmax), -inf if
/// every entry is -inf.
pub fn logsumexp(r: &[f64]) -> f64 {
    if r.iter().any(|v| v.is_nan()) {
        return f64::NAN;
    }
    let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// y = x / sqrt(mean(x^2) + eps) * w per row of d; also returns rstd per row.
pub fn rms_norm(x: &[f64], w: &[f64], eps: f64) -> (Vec<f64>, Vec<f64>) {
    let d = w.len();
    let mut y = Vec::with_capacity(x.len());
    let mut rstd = Vec::new();
    for row in x.chunks(d) {
        let r = 1.0 / (row.iter().map(|v| v * v).sum::<f64>() / d as f64 + eps).sqrt();
        rstd.push(r);
        y.extend(row.iter().zip(w).map(|(v, w)| v * r * w));
    }
    (y, rstd)
}

/// Rotate-half rotary on x [B, H, T, D] with tables [T, D] or [B, T, D].
pub fn rope(x: &[f64], cos: &[f64], sin: &[f64], heads: usize, t: usize, d: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (row, o) in out.chunks_mut(d).enumerate() {
        let (ti, b) = (row % t, row / (t * heads));
        let tab = if cos.len() == t * d { ti * d } else { (b * t + ti) * d };
        let xr = &x[row * d..(row + 1) * d];
        for i in 0..d {
            let rot = if i < d / 2 { -xr[i + d / 2] } else { xr[i - d / 2] };
            o[i] = xr[i] * cos[tab + i] + rot * sin[tab + i];
        }
    }
    out
}

/// The scaled scores of query row `i` of (b, h) against every key, -inf where masked.
fn attention_scores(q: &[f64], k: &[f64], s: &AttnDims, m: &AttnMasks, b: usize, h: usize, i: usize) -> Vec<f64> {
    let d = s.d;
    let kv = (b * s.hkv + h / (s.hq / s.hkv)) * s.tk * d;
    let row = (b * s.hq + h) * s.tq + i;
    (0..s.tk)
        .map(|j| {
            let causal_ok = !s.causal || j + s.tq <= i + s.tk;
            let key_ok = m.key_mask.is_none_or(|km| km[b * s.tk + j] != 0.0);
            let seg_ok = m.segments.is_none_or(|sg| sg[b * s.tq + i] == sg[b * s.tk + j]);
            if causal_ok && key_ok && seg_ok {
                f64::from(s.scale) * (0..d).map(|c| q[row * d + c] * k[kv + j * d + c]).sum::<f64>()
            } else {
                f64::NEG_INFINITY
            }
        })
        .collect()
}

/// Calls f(row, kv offset, scores, lse of the scores) for every query row of every
/// (batch, head).
fn for_each_query_row(q: &[f64], k: &[f64], s: &AttnDims, m: &AttnMasks, mut f: impl FnMut(usize, usize, &[f64], f64)) {
    for b in 0..s.b {
        for h in 0..s.hq {
            let kv = (b * s.hkv + h / (s.hq / s.hkv)) * s.tk * s.d;
            for i in 0..s.tq {
                let scores = attention_scores(q, k, s, m, b, h, i);
                let l = logsumexp(&scores);
                f((b * s.hq + h) * s.tq + i, kv, &scores, l);
            }
        }
    }
}

/// Attention with the full score matrix: returns (o, lse), lse = -inf and o = 0 for a row
/// that sees no key.
pub fn attention(q: &[f64], k: &[f64], v: &[f64], s: &AttnDims, m: &AttnMasks) -> (Vec<f64>, Vec<f64>) {
    let d = s.d;
    let mut o = vec![0.0; q.len()];
    let mut lse = vec![0.0; s.b * s.hq * s.tq];
    for_each_query_row(q, k, s, m, |row, kv, scores, l| {
        lse[row] = l;
        if l == f64::NEG_INFINITY {
            return;
        }
        for (j, sc) in scores.iter().enumerate() {
            let p = (sc - l).exp();
            for c in 0..d {
                o[row * d + c] += p * v[kv + j * d + c];
            }
        }
    });
    (o, lse)
}

/// Gradients (dq, dk, dv) of sum(dout * o) for `attention`, from the softmax backward
/// dS = P (dP - rowsum(P dP)), dP = dO V^T, written as plain loops (checked against finite
/// differences at small sizes in tests/kernels.rs).
pub fn attention_backward(q: &[f64], k: &[f64], v: &[f64], dout: &[f64], s: &AttnDims, m: &AttnMasks) -> [Vec<f64>; 3] {
    let d = s.d;
    let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
    let scale = f64::from(s.scale);
    for_each_query_row(q, k, s, m, |row, kv, scores, l| {
        if l == f64::NEG_INFINITY {
            return;
        }
        let p: Vec<f64> = scores.iter().map(|sc| (sc - l).exp()).collect();
        let dp: Vec<f64> = (0..s.tk).map(|j| (0..d).map(|c| dout[row * d + c] * v[kv + j * d + c]).sum()).collect();
        let delta: f64 = p.iter().zip(&dp).map(|(a, b)| a * b).sum();
        for j in 0..s.tk {
            let ds = p[j] * (dp[j] - delta) * scale;
            for c in 0..d {
                dq[row * d + c] += ds * k[kv + j * d + c];
                dk[kv + j * d + c] += ds * q[row * d + c];
                dv[kv + j * d + c] += p[j] * dout[row * d + c];
            }
        }
    });
    [dq, dk, dv]
}

/// Gradients (dx, dw) of sum(dy * rms_norm(x, w)): with xhat = x rstd,
/// dx = rstd (w dy - xhat mean(w dy xhat)), dw = sum over rows of dy xhat.
pub fn rms_norm_backward(x: &[f64], w: &[f64], dy: &[f64], eps: f64) -> [Vec<f64>; 2] {
    let d = w.len();
    let (_, rstd) = rms_norm(x, w, eps);
    let (mut dx, mut dw) = (Vec::with_capacity(x.len()), vec![0.0; d]);
    for ((xr, dyr), r) in x.chunks(d).zip(dy.chunks(d)).zip(rstd) {
        let mean: f64 = (0..d).map(|i| w[i] * dyr[i] * xr[i] * r).sum::<f64>() / d as f64;
        for i in 0..d {
            dx.push(r * (w[i] * dyr[i] - xr[i] * r * mean));
            dw[i] += dyr[i] * xr[i] * r;
        }
    }
    [dx, dw]
}

/// Gradient of sum(dy * rope(x)): the rotation's transpose.
pub fn rope_backward(dy: &[f64], cos: &[f64], sin: &[f64], heads: usize, t: usize, d: usize) -> Vec<f64> {
    let h = d / 2;
    let mut out = vec![0.0; dy.len()];
    for (row, o) in out.chunks_mut(d).enumerate() {
        let (ti, b) = (row % t, row / (t * heads));
        let tab = if cos.len() == t * d { ti * d } else { (b * t + ti) * d };
        let g = &dy[row * d..(row + 1) * d];
        for i in 0..d {
            o[i] = g[i] * cos[tab + i] + if i < h { g[i + h] * sin[tab + i + h] } else { -g[i - h] * sin[tab + i - h] };
        }
    }
    out
}

/// Gradient of sum(w * cross_entropy(logits)): w (softmax - onehot) per row, 0 on ignored rows.
pub fn cross_entropy_backward(logits: &[f64], targets: &[u32], w: &[f64], v: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(logits.len());
    for ((row, &t), &g) in logits.chunks(v).zip(targets).zip(w) {
        let l = logsumexp(row);
        for (j, x) in row.iter().enumerate() {
            out.push(if t == u32::MAX { 0.0 } else { g * ((x - l).exp() - if j == t as usize { 1.0 } else { 0.0 }) });
        }
    }
    out
}

/// Per-row cross-entropy; rows with the ignore target give 0.
pub fn cross_entropy(logits: &[f64], targets: &[u32], v: usize) -> Vec<f64> {
    logits
        .chunks(v)
        .zip(targets)
        .map(|(row, &t)| if t == u32::MAX { 0.0 } else { logsumexp(row) - row[t as usize] })
        .collect()
}

/// Gradients of L = sum(w * f(inputs)) with respect to each input in `wrt`, by central
/// differences in f64 with step h scaled to each element.
pub fn finite_difference(f: impl Fn(&[Vec<f64>]) -> Vec<f64>, inputs: &[Vec<f64>], w: &[f64], wrt: &[usize]) -> Vec<Vec<f64>> {
    let loss = |x: &[Vec<f64>]| -> f64 { f(x).iter().zip(w).map(|(a, b)| a * b).sum() };
    let mut x = inputs.to_vec();
    wrt.iter()
        .map(|&a| {
            (0..x[a].len())
                .map(|i| {
                    let orig = x[a][i];
                    // An infinite input stays put (its derivative is 0, or NaN where f is).
                    let h = 1e-6 * if orig.is_finite() { orig.abs().max(1.0) } else { 1.0 };
                    x[a][i] = orig + h;
                    let up = loss(&x);
                    x[a][i] = orig - h;
                    let down = loss(&x);
                    x[a][i] = orig;
                    (up - down) / (2.0 * h)
                })
                .collect()
        })
        .collect()
}

/// e^d - 1 - d, with expm1 so that small |d| keeps its digits in f64 too.
pub fn k3(d: f64) -> f64 {
    d.exp_m1() - d
}

/// Per row: (logp_clean, logp_blind, exact KL, k3) at temperature t, in f64.
pub fn kl_dual(clean: &[f64], blind: &[f64], tokens: &[u32], v: usize, t: f64, d_clamp: f64) -> [Vec<f64>; 4] {
    let mut out: [Vec<f64>; 4] = Default::default();
    for (r, &tok) in tokens.iter().enumerate() {
        let a: Vec<f64> = clean[r * v..(r + 1) * v].iter().map(|x| x / t).collect();
        let b: Vec<f64> = blind[r * v..(r + 1) * v].iter().map(|x| x / t).collect();
        let (la, lb) = (logsumexp(&a), logsumexp(&b));
        // Terms with p = 0 add nothing (0 log 0 = 0), also where the blind logit is -inf.
        let kl: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| {
                let p = (x - la).exp();
                if p == 0.0 { 0.0 } else { p * ((x - la) - (y - lb)) }
            })
            .sum();
        let (lc, lbl) = (a[tok as usize] - la, b[tok as usize] - lb);
        let d = (lbl - lc).clamp(-d_clamp, d_clamp);
        for (o, x) in out.iter_mut().zip([lc, lbl, kl, k3(d)]) {
            o.push(x);
        }
    }
    out
}

/// PGPO weights of one response, written from PGPO_METHOD.md section 3 in f64.
pub fn pgpo_response(s: &[f64], valid: &[bool], tau: f64, beta: f64, eps: f64, variant: &str, floor: f64) -> Vec<f64> {
    let idx: Vec<usize> = (0..s.len()).filter(|&i| valid[i]).collect();
    let mut out = vec![0.0; s.len()];
    if idx.is_empty() {
        return out;
    }
    let st: Vec<f64> = idx.iter().map(|&i| s[i].ln_1p()).collect();
    let lo = st.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = st.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let norm: Vec<f64> = st.iter().map(|x| (x - lo) / (hi - lo + eps)).collect();
    let thr = if variant == "quantile" {
        let mut sorted = norm.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[((sorted.len() as f64 * tau).floor() as usize).min(sorted.len() - 1)]
    } else {
        tau
    };
    let w: Vec<f64> = norm
        .iter()
        .map(|&i| {
            if i < thr {
                let w = i / (thr + eps);
                if variant == "floor" { w.max(floor) } else { w }
            } else {
                1.0 + beta * (i - thr) / (1.0 - thr + eps)
            }
        })
        .collect();
    let sum: f64 = w.iter().sum();
    for (k, &i) in idx.iter().enumerate() {
        out[i] = if sum <= 0.0 {
            1.0
        } else if variant == "no-norm" {
            w[k]
        } else {
            w[k] * idx.len() as f64 / sum
        };
    }
    out
}

/// The clipped policy loss of one token from its log-prob, in f64.
pub fn token_policy_loss(logp: f64, old: f64, adv: f64, reference: f64, clip: (f64, f64), dual: f64, kl_coef: f64) -> f64 {
    let ratio = (logp - old).exp();
    // NaN propagates through max and min (as torch.maximum/minimum), where f64's drop it.
    if ratio.is_nan() || adv.is_nan() {
        return f64::NAN;
    }
    let mut loss = (-adv * ratio).max(-adv * ratio.clamp(1.0 - clip.0, 1.0 + clip.1));
    if dual > 0.0 && adv < 0.0 {
        loss = loss.min(-adv * dual);
    }
    if kl_coef > 0.0 {
        loss += kl_coef * k3(reference - logp);
    }
    loss
}
