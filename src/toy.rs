//! A two-layer decoder-only transformer (RMSNorm, rotary, grouped-query causal attention,
//! SwiGLU MLP, tied embeddings) trained through the tape on a copy task: the sequence
//! `x1..xL SEP x1..xL`, scored on the second half. It exercises every transformer kernel
//! forward and backward on whichever device it is given, so CPU and GPU runs can be compared
//! step by step.

use crate::autograd::{ops as ag, Tape, Var};
use crate::device::Device;
use crate::error::Result;
use crate::ops::{AttnOptions, RopeTables, Transpose, IGNORE};
use crate::rng::Rng;
use crate::tensor::Tensor;
use crate::train::optimizer::{AdamW, AdamWConfig};

#[derive(Clone, Debug)]
pub struct ToyConfig {
    pub vocab: usize,
    pub dim: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub layers: usize,
    /// L: tokens to copy.
    pub half_len: usize,
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
}

impl Default for ToyConfig {
    fn default() -> Self {
        ToyConfig { vocab: 16, dim: 32, heads: 4, kv_heads: 2, ffn: 64, layers: 2, half_len: 6, batch: 8, lr: 1e-2, seed: 7 }
    }
}

const SEP: u32 = 0;
const EPS: f32 = 1e-6;

/// Parameters per layer, in order: attn_norm, wq, wk, wv, wo, mlp_norm, wg, wu, wd.
const PER_LAYER: usize = 9;

/// Shapes of every parameter: embedding, the layers, the final norm.
fn shapes(c: &ToyConfig) -> Vec<Vec<usize>> {
    let hd = c.dim / c.heads;
    let kv = c.kv_heads * hd;
    let mut s = vec![vec![c.vocab, c.dim]];
    for _ in 0..c.layers {
        s.extend([
            vec![c.dim],
            vec![c.dim, c.dim],
            vec![c.dim, kv],
            vec![c.dim, kv],
            vec![c.dim, c.dim],
            vec![c.dim],
            vec![c.dim, c.ffn],
            vec![c.dim, c.ffn],
            vec![c.ffn, c.dim],
        ]);
    }
    s.push(vec![c.dim]);
    s
}

/// Norm weights 1; matrices uniform with variance 1/fan_in; embeddings uniform in ±0.5.
pub fn init(c: &ToyConfig, device: &Device) -> Result<Vec<Tensor>> {
    let mut rng = Rng::new(c.seed);
    shapes(c)
        .iter()
        .map(|s| {
            let n: usize = s.iter().product();
            let data = match s.len() {
                1 => vec![1.0; n],
                _ if s[0] == c.vocab => rng.vec(n, -0.5, 0.5),
                _ => {
                    let a = (3.0 / s[0] as f32).sqrt();
                    rng.vec(n, -a, a)
                }
            };
            Tensor::from_vec(data, s, device)
        })
        .collect()
}

/// One batch: (input ids [B*T], targets [B*T]) with T = 2L, targets ignored on the first half.
pub fn batch(c: &ToyConfig, step: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(c.seed.wrapping_mul(1000) + step);
    let (l, t) = (c.half_len, 2 * c.half_len);
    let (mut ids, mut targets) = (Vec::new(), Vec::new());
    for _ in 0..c.batch {
        let x: Vec<u32> = (0..l).map(|_| 1 + rng.below(c.vocab - 1) as u32).collect();
        let seq: Vec<u32> = x.iter().copied().chain([SEP]).chain(x.iter().copied()).collect();
        ids.extend(&seq[..t]);
        targets.extend((0..t).map(|i| if i + 1 > l { seq[i + 1] } else { IGNORE }));
    }
    (ids, targets)
}

/// [B*T, H*hd] -> [B, H, T, hd].
fn heads(x: &Var, b: usize, t: usize, h: usize, hd: usize) -> Result<Var> {
    ag::permute(&ag::reshape(x, &[b, t, h, hd])?, &[0, 2, 1, 3])
}

/// Mean loss of the batch, recorded on the tape of `p`.
pub fn loss(c: &ToyConfig, p: &[Var], ids: &[u32], targets: &[u32]) -> Result<Var> {
    let (b, t, hd) = (c.batch, 2 * c.half_len, c.dim / c.heads);
    let dev = p[0].value().device();
    let positions: Vec<f32> = (0..t).map(|i| i as f32).collect();
    let tables = RopeTables::one_d(&positions, hd, 10_000.0, dev)?;
    let causal = AttnOptions { causal: true, ..Default::default() };
    let mut h = ag::embedding(&p[0], ids)?;
    for l in 0..c.layers {
        let w = &p[1 + l * PER_LAYER..1 + (l + 1) * PER_LAYER];
        let x = ag::rms_norm(&h, &w[0], EPS)?;
        let q = ag::rope(&heads(&ag::matmul(&x, &w[1], Transpose::NN)?, b, t, c.heads, hd)?, &tables)?;
        let k = ag::rope(&heads(&ag::matmul(&x, &w[2], Transpose::NN)?, b, t, c.kv_heads, hd)?, &tables)?;
        let v = heads(&ag::matmul(&x, &w[3], Transpose::NN)?, b, t, c.kv_heads, hd)?;
        let o = ag::attention(&q, &k, &v, &causal)?;
        let o = ag::reshape(&ag::permute(&o, &[0, 2, 1, 3])?, &[b * t, c.dim])?;
        h = ag::add(&h, &ag::matmul(&o, &w[4], Transpose::NN)?)?;
        let x = ag::rms_norm(&h, &w[5], EPS)?;
        let gated = ag::swiglu(&ag::matmul(&x, &w[6], Transpose::NN)?, &ag::matmul(&x, &w[7], Transpose::NN)?)?;
        h = ag::add(&h, &ag::matmul(&gated, &w[8], Transpose::NN)?)?;
    }
    let x = ag::rms_norm(&h, &p[p.len() - 1], EPS)?;
    let logits = ag::matmul(&x, &p[0], Transpose::NT)?;
    ag::cross_entropy_mean(&logits, targets)
}

/// Trains for `steps` on `device`; returns the loss before each step's update.
pub fn train(c: &ToyConfig, device: &Device, steps: u64) -> Result<Vec<f32>> {
    let mut params = init(c, device)?;
    let mut opt = AdamW::new(&params, AdamWConfig { lr: c.lr, ..Default::default() })?;
    let mut losses = Vec::new();
    for step in 0..steps {
        let tape = Tape::new();
        let vars: Vec<Var> = params.iter().map(|t| tape.var(t.clone())).collect();
        let (ids, targets) = batch(c, step);
        let l = loss(c, &vars, &ids, &targets)?;
        let grads = tape.backward(&l)?;
        let g: Vec<&Tensor> = vars
            .iter()
            .map(|v| grads.get(v).ok_or_else(|| crate::Error::shape("toy", "a parameter received no gradient")))
            .collect::<Result<_>>()?;
        losses.push(l.value().to_vec()?[0]);
        params = opt.step(&params, &g)?.0;
    }
    Ok(losses)
}
