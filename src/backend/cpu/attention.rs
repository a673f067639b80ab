//! Fused (flash-style) attention and its backward (see shaders/attention.wgsl).
//! Forward: per query row, keys are visited in blocks with an online softmax, so only the
//! output and the row log-sum-exp are stored, never the [Tq, Tk] scores. Backward recomputes
//! the probabilities from the lse: one pass over query rows for dQ, one over key rows for
//! dK and dV (summing the query heads that share a KV head), with no atomics.

use rayon::prelude::*;

/// Sizes and options of one attention call. q is [B, Hq, Tq, D]; k and v are [B, Hkv, Tk, D].
#[derive(Clone, Copy, Debug)]
pub struct AttnDims {
    pub b: usize,
    pub hq: usize,
    pub hkv: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub causal: bool,
    pub scale: f32,
}

/// Optional masks: key_mask [B, Tk] (non-zero = visible: padding and the blind pass's
/// hidden visual tokens), segments [B, T] (query and key must share a segment id).
#[derive(Clone, Copy, Default)]
pub struct AttnMasks<'a> {
    pub key_mask: Option<&'a [f32]>,
    pub segments: Option<&'a [u32]>,
}

/// Marks a query row that sees no key: its output is 0 and its backward is 0.
pub const NO_KEY_LSE: f32 = f32::NEG_INFINITY;

impl AttnDims {
    fn visible(&self, m: &AttnMasks, b: usize, i: usize, j: usize) -> bool {
        if self.causal && j + self.tq > i + self.tk {
            return false;
        }
        if let Some(km) = m.key_mask
            && km[b * self.tk + j] == 0.0
        {
            return false;
        }
        if let Some(seg) = m.segments
            && seg[b * self.tq + i] != seg[b * self.tk + j]
        {
            return false;
        }
        true
    }

    /// Last key (exclusive) a query row may see under the causal mask.
    fn key_end(&self, i: usize) -> usize {
        if self.causal { (i + 1 + self.tk - self.tq).min(self.tk) } else { self.tk }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const KEY_BLOCK: usize = 64;

/// o [B, Hq, Tq, D] and lse [B, Hq, Tq].
pub fn attention_forward(q: &[f32], k: &[f32], v: &[f32], s: AttnDims, m: AttnMasks, o: &mut [f32], lse: &mut [f32]) {
    let d = s.d;
    let group = s.hq / s.hkv;
    o.par_chunks_mut(d).zip(lse.par_iter_mut()).enumerate().for_each(|(row, (o, lse))| {
        let i = row % s.tq;
        let h = (row / s.tq) % s.hq;
        let b = row / (s.tq * s.hq);
        let kv = (b * s.hkv + h / group) * s.tk * d;
        let qr = &q[row * d..(row + 1) * d];
        let (mut mx, mut sum) = (f32::NEG_INFINITY, 0.0f32);
        o.fill(0.0);
        let mut scores = [0.0f32; KEY_BLOCK];
        let end = s.key_end(i);
        for j0 in (0..end).step_by(KEY_BLOCK) {
            let j1 = (j0 + KEY_BLOCK).min(end);
            let mut bmax = f32::NEG_INFINITY;
            for j in j0..j1 {
                let sc = if s.visible(&m, b, i, j) {
                    s.scale * dot(qr, &k[kv + j * d..kv + (j + 1) * d])
                } else {
                    f32::NEG_INFINITY
                };
                scores[j - j0] = sc;
                bmax = bmax.max(sc);
            }
            if bmax == f32::NEG_INFINITY {
                continue;
            }
            let new_max = mx.max(bmax);
            let corr = (mx - new_max).exp();
            sum *= corr;
            o.iter_mut().for_each(|x| *x *= corr);
            for j in j0..j1 {
                let p = (scores[j - j0] - new_max).exp();
                if p == 0.0 {
                    continue;
                }
                sum += p;
                for (x, vv) in o.iter_mut().zip(&v[kv + j * d..kv + (j + 1) * d]) {
                    *x += p * vv;
                }
            }
            mx = new_max;
        }
        if sum > 0.0 {
            let inv = 1.0 / sum;
            o.iter_mut().for_each(|x| *x *= inv);
            *lse = mx + sum.ln();
        } else {
            *lse = NO_KEY_LSE;
        }
    });
}

/// delta[row] = sum_d dO * O, the softmax-backward row term.
pub fn attention_delta(o: &[f32], dout: &[f32], d: usize, delta: &mut [f32]) {
    delta.par_iter_mut().enumerate().for_each(|(r, x)| *x = dot(&o[r * d..(r + 1) * d], &dout[r * d..(r + 1) * d]));
}

/// What the backward reads: the forward's inputs and lse, delta = rowsum(dO * O), and dO.
#[derive(Clone, Copy)]
pub struct BackwardInputs<'a> {
    pub q: &'a [f32],
    pub k: &'a [f32],
    pub v: &'a [f32],
    pub lse: &'a [f32],
    pub delta: &'a [f32],
    pub dout: &'a [f32],
}

/// The probability p = exp(scale q.k - lse) and the score gradient ds = p (dO.v - delta) scale.
fn p_and_ds(s: &AttnDims, qi: &[f32], kj: &[f32], doi: &[f32], vj: &[f32], lse: f32, delta: f32) -> (f32, f32) {
    let p = (s.scale * dot(qi, kj) - lse).exp();
    (p, p * (dot(doi, vj) - delta) * s.scale)
}

/// dq [B, Hq, Tq, D].
pub fn attention_backward_dq(x: BackwardInputs, s: AttnDims, m: AttnMasks, dq: &mut [f32]) {
    let BackwardInputs { q, k, v, lse, delta, dout } = x;
    let d = s.d;
    let group = s.hq / s.hkv;
    dq.par_chunks_mut(d).enumerate().for_each(|(row, dq)| {
        dq.fill(0.0);
        if lse[row] == NO_KEY_LSE {
            return;
        }
        let i = row % s.tq;
        let h = (row / s.tq) % s.hq;
        let b = row / (s.tq * s.hq);
        let kv = (b * s.hkv + h / group) * s.tk * d;
        let (qr, dor) = (&q[row * d..(row + 1) * d], &dout[row * d..(row + 1) * d]);
        for j in 0..s.key_end(i) {
            if !s.visible(&m, b, i, j) {
                continue;
            }
            let kj = &k[kv + j * d..kv + (j + 1) * d];
            let (_, ds) = p_and_ds(&s, qr, kj, dor, &v[kv + j * d..kv + (j + 1) * d], lse[row], delta[row]);
            for (x, kk) in dq.iter_mut().zip(kj) {
                *x += ds * kk;
            }
        }
    });
}

/// dk and dv [B, Hkv, Tk, D], summed over the query heads of each KV head.
pub fn attention_backward_dkv(x: BackwardInputs, s: AttnDims, m: AttnMasks, dk: &mut [f32], dv: &mut [f32]) {
    let BackwardInputs { q, k, v, lse, delta, dout } = x;
    let d = s.d;
    let group = s.hq / s.hkv;
    dk.par_chunks_mut(d).zip(dv.par_chunks_mut(d)).enumerate().for_each(|(krow, (dk, dv))| {
        dk.fill(0.0);
        dv.fill(0.0);
        let j = krow % s.tk;
        let hk = (krow / s.tk) % s.hkv;
        let b = krow / (s.tk * s.hkv);
        let (kj, vj) = (&k[krow * d..(krow + 1) * d], &v[krow * d..(krow + 1) * d]);
        // Under the causal mask, query i sees key j when i + tk - tq >= j.
        let first = if s.causal { (j + s.tq).saturating_sub(s.tk) } else { 0 };
        for h in hk * group..(hk + 1) * group {
            for i in first..s.tq {
                let row = (b * s.hq + h) * s.tq + i;
                if lse[row] == NO_KEY_LSE || !s.visible(&m, b, i, j) {
                    continue;
                }
                let (qi, doi) = (&q[row * d..(row + 1) * d], &dout[row * d..(row + 1) * d]);
                let (p, ds) = p_and_ds(&s, qi, kj, doi, vj, lse[row], delta[row]);
                for c in 0..d {
                    dv[c] += p * doi[c];
                    dk[c] += ds * qi[c];
                }
            }
        }
    });
}
