//! PGPO token weights per response (PGPO_METHOD.md section 3; see shaders/pgpo_weights.wgsl).

use rayon::prelude::*;

/// Which form of the weights (the paper's, and variants reported for the authors' code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Threshold tau on the normalised score, mass conservation.
    Paper,
    /// The threshold is the value at index floor(L * tau) of the response's sorted scores.
    Quantile,
    /// Weights under the threshold are at least `floor`.
    Floor,
    /// No mass conservation: the gated weights as they are.
    NoNorm,
}

impl Variant {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn parse(s: &str) -> Option<Variant> {
        Some(match s {
            "paper" => Variant::Paper,
            "quantile" => Variant::Quantile,
            "floor" => Variant::Floor,
            "no-norm" => Variant::NoNorm,
            _ => return None,
        })
    }
}

/// Defaults from PGPO_METHOD.md: tau 0.4, beta 2.0, eps 1e-8, floor 0.1 (the floor variant).
#[derive(Clone, Copy, Debug)]
pub struct WeightConfig {
    pub tau: f32,
    pub beta: f32,
    pub eps: f32,
    pub variant: Variant,
    pub floor: f32,
}

impl Default for WeightConfig {
    fn default() -> Self {
        WeightConfig { tau: 0.4, beta: 2.0, eps: 1e-8, variant: Variant::Paper, floor: 0.1 }
    }
}

/// The value at index floor(L * tau) of the sorted scores (clamped to the last index).
pub fn quantile(values: &[f32], tau: f32) -> f32 {
    let mut v = values.to_vec();
    v.sort_by(f32::total_cmp);
    v[((v.len() as f32 * tau).floor() as usize).min(v.len() - 1)]
}

/// Weights of one response: `s` its dependency scores, `valid` its token mask.
pub fn response_weights(s: &[f32], valid: &[bool], c: &WeightConfig, out: &mut [f32]) {
    let st: Vec<f32> = s.iter().map(|&x| x.ln_1p()).collect();
    let pick = || st.iter().zip(valid).filter(|(_, v)| **v).map(|(x, _)| *x);
    let n = pick().count();
    if n == 0 {
        out.fill(0.0);
        return;
    }
    let (lo, hi) = pick().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let norm = |x: f32| (x - lo) / (hi - lo + c.eps);
    let thr = if c.variant == Variant::Quantile { quantile(&pick().map(norm).collect::<Vec<_>>(), c.tau) } else { c.tau };
    let mut sum = 0.0f32;
    for ((o, &x), &ok) in out.iter_mut().zip(&st).zip(valid) {
        *o = 0.0;
        if !ok {
            continue;
        }
        let i = norm(x);
        let mut w = if i < thr { i / (thr + c.eps) } else { 1.0 + c.beta * (i - thr) / (1.0 - thr + c.eps) };
        if c.variant == Variant::Floor && i < thr {
            w = w.max(c.floor);
        }
        *o = w;
        sum += w;
    }
    for (o, &ok) in out.iter_mut().zip(valid) {
        if !ok {
            continue;
        }
        *o = if sum <= 0.0 {
            // Degenerate response (every score equal): uniform weights (ours).
            1.0
        } else if c.variant == Variant::NoNorm {
            *o
        } else {
            *o * n as f32 / sum
        };
    }
}

/// Weights of every response: rows of `tvd` and `mask` ([B, L], mask > 0 on response tokens).
pub fn pgpo_weights(tvd: &[f32], mask: &[f32], l: usize, c: &WeightConfig, out: &mut [f32]) {
    out.par_chunks_mut(l).enumerate().for_each(|(r, o)| {
        let valid: Vec<bool> = mask[r * l..(r + 1) * l].iter().map(|&m| m > 0.0).collect();
        response_weights(&tvd[r * l..(r + 1) * l], &valid, c, o);
    });
}
