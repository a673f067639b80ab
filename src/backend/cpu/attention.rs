//! Fused (flash-style) attention and its backward (see shaders/attention.wgsl for the GPU
//! form). On the CPU the work is tiled into 64 x 64 blocks whose products run through the
//! `gemm` crate. Forward: per block of 64 query rows, key blocks are visited with an online
//! softmax, so only the output and the row log-sum-exp are stored, never the [Tq, Tk]
//! scores. Backward: one task per KV head walks its key blocks and, for each, the query
//! blocks of every query head in its group, recomputing P from the lse; dQ, dK and dV are
//! each owned by one task, so there are no atomics and results are deterministic.

use super::fastmath::exp;
use super::matmul_few_rows::{try_matmul, FewRows, MAX_ROWS_CACHED};
use super::rowstats::{attention_grad_row, softmax_block_row};
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

/// Per-call summaries of the masks (see `AttnDims::block_facts`).
struct BlockFacts {
    hidden_before: Option<Vec<u32>>,
    run_end: Option<Vec<u32>>,
}

enum Block {
    Visible,
    Hidden,
    Mixed,
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

    /// What lets whole blocks skip the per-element mask, computed once per call.
    fn block_facts(&self, m: &AttnMasks) -> BlockFacts {
        // Entry j of batch b (of Tk + 1) counts the hidden keys among its first j.
        let hidden_before = m.key_mask.filter(|_| self.tk > 0).map(|km| {
            let mut out = Vec::with_capacity(self.b * (self.tk + 1));
            for row in km.chunks(self.tk) {
                let mut n = 0;
                out.push(0);
                out.extend(row.iter().map(|&x| {
                    n += u32::from(x == 0.0);
                    n
                }));
            }
            out
        });
        // Entry i of batch b: the end of the run of equal segment ids that holds i.
        let run_end = m.segments.filter(|_| self.tq > 0).map(|seg| {
            let mut out = vec![0u32; seg.len()];
            for (row, ends) in seg.chunks(self.tq).zip(out.chunks_mut(self.tq)) {
                let mut end = row.len();
                for i in (0..row.len()).rev() {
                    if i + 1 < row.len() && row[i + 1] != row[i] {
                        end = i + 1;
                    }
                    ends[i] = end as u32;
                }
            }
            out
        });
        BlockFacts { hidden_before, run_end }
    }

    /// Whether every pair of queries [i0, i0 + rows) and keys [j0, j0 + cols) of batch b is
    /// visible, none is, or it varies (then the per-element mask runs).
    #[allow(clippy::too_many_arguments)]
    fn block(&self, m: &AttnMasks, f: &BlockFacts, b: usize, i0: usize, rows: usize, j0: usize, cols: usize) -> Block {
        let mut all = true;
        if self.causal {
            if j0 + self.tq > i0 + rows - 1 + self.tk {
                return Block::Hidden;
            }
            all &= j0 + cols + self.tq <= i0 + 1 + self.tk;
        }
        if let Some(h) = &f.hidden_before {
            let row = &h[b * (self.tk + 1)..];
            let hidden = (row[j0 + cols] - row[j0]) as usize;
            if hidden == cols {
                return Block::Hidden;
            }
            all &= hidden == 0;
        }
        if let (Some(seg), Some(ends)) = (m.segments, &f.run_end) {
            let (qi, kj) = (b * self.tq + i0, b * self.tk + j0);
            let uniform = ends[qi] as usize >= i0 + rows && ends[kj] as usize >= j0 + cols;
            if uniform && seg[qi] != seg[kj] {
                return Block::Hidden;
            }
            all &= uniform;
        }
        if all { Block::Visible } else { Block::Mixed }
    }

    /// Applies the mask of a block that is not wholly hidden (those are skipped) to its
    /// scores [rows, cols] (row stride `stride`).
    #[allow(clippy::too_many_arguments)]
    fn apply_mask(&self, m: &AttnMasks, block: Block, b: usize, i0: usize, j0: usize, rows: usize, cols: usize, scores: &mut [f32], stride: usize) {
        match block {
            Block::Visible => {}
            Block::Hidden => (0..rows).for_each(|r| scores[r * stride..r * stride + cols].fill(f32::NEG_INFINITY)),
            Block::Mixed => self.mask_block(m, b, i0, j0, rows, cols, scores, stride),
        }
    }

    /// Writes -inf over the scores [rows, cols] (row stride `stride`) of hidden pairs.
    fn mask_block(&self, m: &AttnMasks, b: usize, i0: usize, j0: usize, rows: usize, cols: usize, scores: &mut [f32], stride: usize) {
        for r in 0..rows {
            for c in 0..cols {
                if !self.visible(m, b, i0 + r, j0 + c) {
                    scores[r * stride + c] = f32::NEG_INFINITY;
                }
            }
        }
    }

    /// Last key (exclusive) a query row may see under the causal mask.
    fn key_end(&self, i: usize) -> usize {
        if self.causal { (i + 1 + self.tk - self.tq).min(self.tk) } else { self.tk }
    }
}

/// Query and key rows per block.
const BQ: usize = 64;
const BK: usize = 64;

/// dst[m, n] (+)= lhs[m, k] . rhs[k, n], each operand given by (row stride, column stride).
/// SAFETY (callers): every pointer covers its matrix under the given strides.
#[allow(clippy::too_many_arguments)]
unsafe fn mm(
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    accumulate: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                unsafe { std::slice::from_raw_parts_mut(dst.add(r * dst_rs), n) }.fill(0.0);
            }
        }
        return;
    }
    // Blocks of at most 16 query rows (a decode step's single row, a short chunk) go to the
    // few-rows kernel, for QKᵀ, P·V and dS·K alike: gemm would pack the other operand for them.
    let few = FewRows { m, n, k, a_rs: lhs.1, b_rs: rhs.1, b_cs: rhs.2, dst_rs, accumulate };
    if lhs.2 == 1 && m <= MAX_ROWS_CACHED && unsafe { try_matmul(lhs.0, rhs.0, dst, few) } {
        return;
    }
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs.0,
            lhs.2 as isize,
            lhs.1 as isize,
            rhs.0,
            rhs.2 as isize,
            rhs.1 as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// o [B, Hq, Tq, D] and lse [B, Hq, Tq].
pub fn attention_forward(q: &[f32], k: &[f32], v: &[f32], s: AttnDims, m: AttnMasks, o: &mut [f32], lse: &mut [f32]) {
    let d = s.d;
    let group = s.hq / s.hkv;
    let facts = s.block_facts(&m);
    let head_len = s.tk * d;
    fn head(t: &[f32], kv: usize, len: usize) -> &[f32] {
        &t[kv * len..(kv + 1) * len]
    }
    if s.tq == 1 && group > 1 && group <= BQ {
        // A decode step (one query per sequence): the heads of a GQA group share their keys
        // and their one position, so they run as the rows of one block and each KV head is
        // read once, not once per query head. Row r of block bg = b * Hkv + g is query head
        // g * group + r of batch b, so the group's q, o and lse rows are contiguous.
        o.par_chunks_mut(group * d).zip(lse.par_chunks_mut(group)).enumerate().for_each(|(bg, (o, lse))| {
            let qg = &q[bg * group * d..(bg + 1) * group * d];
            query_block(&s, &m, &facts, bg / s.hkv, 0, true, qg, head(k, bg, head_len), head(v, bg, head_len), o, lse);
        });
        return;
    }
    o.par_chunks_mut(s.tq * d).zip(lse.par_chunks_mut(s.tq)).enumerate().for_each(|(bh, (o, lse))| {
        let (b, h) = (bh / s.hq, bh % s.hq);
        let kv = b * s.hkv + h / group;
        let qh = &q[bh * s.tq * d..(bh + 1) * s.tq * d];
        o.par_chunks_mut(BQ * d).zip(lse.par_chunks_mut(BQ)).enumerate().for_each(|(qb, (o, lse))| {
            let i0 = qb * BQ;
            query_block(&s, &m, &facts, b, i0, false, &qh[i0 * d..(i0 + lse.len()) * d], head(k, kv, head_len), head(v, kv, head_len), o, lse);
        });
    });
}

/// One block of query rows of batch b (q [rows, D]; their outputs o [rows, D] and lse
/// [rows]) against every key block of one KV head (k, v [Tk, D]), with an online softmax.
/// Row r stands at query position i0 + r, or with `shared` every row at i0 (the heads of a
/// GQA group in a decode step).
#[allow(clippy::too_many_arguments)]
fn query_block(s: &AttnDims, m: &AttnMasks, facts: &BlockFacts, b: usize, i0: usize, shared: bool, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32]) {
    let d = s.d;
    let rows = lse.len();
    // The query positions the block spans.
    let span = if shared { 1 } else { rows };
    let mut scores = vec![0.0f32; rows * BK];
    let (mut mx, mut sum) = (vec![f32::NEG_INFINITY; rows], vec![0.0f32; rows]);
    // Accumulate apart from `o`, so every element of `o` is written exactly once below
    // (a poisoned output then shows any row this kernel fails to finish).
    let mut acc = vec![0.0f32; rows * d];
    let end = s.key_end(i0 + span - 1);
    for j0 in (0..end).step_by(BK) {
        let cols = BK.min(end - j0);
        // A block no query sees adds nothing: the vision tower's windows and images
        // (segments) leave most of the [T, T] blocks hidden.
        let block = s.block(m, facts, b, i0, span, j0, cols);
        if matches!(block, Block::Hidden) {
            continue;
        }
        // S = Q_i K_j^T.
        unsafe {
            mm((rows, cols, d), scores.as_mut_ptr(), BK, false, (q.as_ptr(), d, 1), (k[j0 * d..].as_ptr(), 1, d));
        }
        if shared && matches!(block, Block::Mixed) {
            for r in 0..rows {
                s.mask_block(m, b, i0, j0, 1, cols, &mut scores[r * BK..], BK);
            }
        } else {
            s.apply_mask(m, block, b, i0, j0, rows, cols, &mut scores, BK);
        }
        for r in 0..rows {
            let (nm, add) = softmax_block_row(&mut scores[r * BK..r * BK + cols], s.scale, mx[r]);
            if nm == f32::NEG_INFINITY {
                continue;
            }
            let corr = exp(mx[r] - nm);
            if corr != 1.0 {
                sum[r] *= corr;
                acc[r * d..(r + 1) * d].iter_mut().for_each(|x| *x *= corr);
            }
            sum[r] += add;
            mx[r] = nm;
        }
        // O_i += P V_j.
        unsafe {
            mm((rows, d, cols), acc.as_mut_ptr(), d, true, (scores.as_ptr(), BK, 1), (v[j0 * d..].as_ptr(), d, 1));
        }
    }
    for r in 0..rows {
        let (out, a) = (&mut o[r * d..(r + 1) * d], &acc[r * d..(r + 1) * d]);
        // A row that sees no key has sum 0 (its output is 0); NaN sums propagate.
        if sum[r] == 0.0 {
            out.fill(0.0);
            lse[r] = NO_KEY_LSE;
        } else {
            let inv = 1.0 / sum[r];
            out.iter_mut().zip(a).for_each(|(x, y)| *x = y * inv);
            lse[r] = mx[r] + sum[r].ln();
        }
    }
}

/// delta[row] = sum_d dO * O, the softmax-backward row term.
pub fn attention_delta(o: &[f32], dout: &[f32], d: usize, delta: &mut [f32]) {
    delta.par_iter_mut().enumerate().for_each(|(r, x)| {
        *x = o[r * d..(r + 1) * d].iter().zip(&dout[r * d..(r + 1) * d]).map(|(a, b)| a * b).sum()
    });
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

/// dq [B, Hq, Tq, D], dk and dv [B, Hkv, Tk, D] (summed over the query heads of each KV head).
pub fn attention_backward(x: BackwardInputs, s: AttnDims, m: AttnMasks, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let d = s.d;
    let group = s.hq / s.hkv;
    let facts = s.block_facts(&m);
    let (qn, kn) = (group * s.tq * d, s.tk * d);
    dq.par_chunks_mut(qn).zip(dk.par_chunks_mut(kn).zip(dv.par_chunks_mut(kn))).enumerate().for_each(|(bg, (dq, (dk, dv)))| {
        let b = bg / s.hkv;
        let kv = bg * kn;
        // Accumulators apart from the outputs, copied out once at the end, so a poisoned
        // output shows any element the kernel fails to write.
        let (mut dq_acc, mut dk_acc, mut dv_acc) = (vec![0.0f32; qn], vec![0.0f32; kn], vec![0.0f32; kn]);
        let mut p = vec![0.0f32; BQ * BK];
        let mut dp = vec![0.0f32; BQ * BK];
        for j0 in (0..s.tk).step_by(BK) {
            let cols = BK.min(s.tk - j0);
            // Under the causal mask, query i sees key j when i + tk - tq >= j.
            let first = if s.causal { (j0 + s.tq).saturating_sub(s.tk) } else { 0 };
            for g in 0..group {
                let h = (bg % s.hkv) * group + g;
                let base = (b * s.hq + h) * s.tq;
                for i0 in (first - first % BQ..s.tq).step_by(BQ) {
                    let rows = BQ.min(s.tq - i0);
                    // A wholly hidden block has P = dS = 0: nothing to add.
                    let block = s.block(&m, &facts, b, i0, rows, j0, cols);
                    if matches!(block, Block::Hidden) {
                        continue;
                    }
                    let (qi, doi) = (&x.q[(base + i0) * d..], &x.dout[(base + i0) * d..]);
                    unsafe {
                        // S = Q_i K_j^T, then P = exp(S scale - lse) on visible entries.
                        mm((rows, cols, d), p.as_mut_ptr(), BK, false, (qi.as_ptr(), d, 1), (x.k[kv + j0 * d..].as_ptr(), 1, d));
                        // dP = dO_i V_j^T.
                        mm((rows, cols, d), dp.as_mut_ptr(), BK, false, (doi.as_ptr(), d, 1), (x.v[kv + j0 * d..].as_ptr(), 1, d));
                    }
                    s.apply_mask(&m, block, b, i0, j0, rows, cols, &mut p, BK);
                    for r in 0..rows {
                        let (l, delta) = (x.lse[base + i0 + r], x.delta[base + i0 + r]);
                        let (pr, dpr) = (&mut p[r * BK..r * BK + cols], &mut dp[r * BK..r * BK + cols]);
                        if l == NO_KEY_LSE {
                            pr.fill(0.0);
                            dpr.fill(0.0);
                        } else {
                            attention_grad_row(pr, dpr, s.scale, l, delta);
                        }
                    }
                    let dq_i = dq_acc[(g * s.tq + i0) * d..].as_mut_ptr();
                    unsafe {
                        // dV_j += P^T dO_i; dK_j += dS^T Q_i; dQ_i += dS K_j.
                        mm((cols, d, rows), dv_acc[j0 * d..].as_mut_ptr(), d, true, (p.as_ptr(), 1, BK), (doi.as_ptr(), d, 1));
                        mm((cols, d, rows), dk_acc[j0 * d..].as_mut_ptr(), d, true, (dp.as_ptr(), 1, BK), (qi.as_ptr(), d, 1));
                        mm((rows, d, cols), dq_i, d, true, (dp.as_ptr(), BK, 1), (x.k[kv + j0 * d..].as_ptr(), d, 1));
                    }
                }
            }
        }
        dq.copy_from_slice(&dq_acc);
        dk.copy_from_slice(&dk_acc);
        dv.copy_from_slice(&dv_acc);
    });
}
