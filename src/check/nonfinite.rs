//! Non-finite inputs: NaN and ±inf placed in the inputs of the row kernels, attention and
//! the PGPO kernels. The semantics are PyTorch's, the same on every backend: a NaN or +inf
//! in a row makes what depends on it NaN (so a trainer can detect the bad step), and -inf
//! logits have probability 0 and add nothing (0 log 0 = 0). Each check reuses its kernel's
//! run and f64 reference; only the inputs differ.

use super::cases::one;
use super::rl::{kl_inputs, policy_inputs};
use super::transformer::{attn_inputs, ce_inputs, rms_inputs};
use super::{Inputs, KernelCheck};
use crate::rng::Rng;

/// At least one row of each kind below, past one workgroup, and one column.
const ROWS: &[&[usize]] = &[&[6, 1], &[7, 33], &[12, 1000], &[6, 4099]];

/// Row r of a [rows, cols] array, by r % 6: a NaN; +inf; -inf in two places; all -inf;
/// untouched; -inf at the row's token (or its first column).
fn poison_rows(x: &mut [f32], cols: usize, tokens: Option<&[u32]>) {
    for (r, row) in x.chunks_mut(cols).enumerate() {
        match r % 6 {
            0 => row[cols / 2] = f32::NAN,
            1 => row[0] = f32::INFINITY,
            2 => {
                row[cols - 1] = f32::NEG_INFINITY;
                row[cols / 3] = f32::NEG_INFINITY;
            }
            3 => row.fill(f32::NEG_INFINITY),
            5 => row[tokens.map_or(0, |t| t[r] as usize)] = f32::NEG_INFINITY,
            _ => {}
        }
    }
}

/// The inputs of `base` with the rows of its first array poisoned.
fn poisoned(base: fn(&[usize], &mut Rng) -> Inputs, s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = base(s, rng);
    poison_rows(&mut x.f[0], s[1], None);
    x
}

fn rows_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    poisoned(one, s, rng)
}

fn rms_nonfinite_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    poisoned(rms_inputs, s, rng)
}

fn ce_nonfinite_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = ce_inputs(s, rng);
    let tokens: Vec<u32> = x.ids.iter().map(|&t| if t == crate::ops::IGNORE { 0 } else { t }).collect();
    poison_rows(&mut x.f[0], s[1], Some(&tokens));
    x
}

/// Clean and blind rows by r % 8: clean NaN; blind NaN; clean +inf; clean -inf off the
/// token (finite KL); blind -inf off the token (KL = +inf); blind -inf at the token
/// (d = -inf, clamped); clean -inf at the token (d = +inf, clamped); clean all -inf.
fn kl_nonfinite_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = kl_inputs(s, rng);
    let v = s[1];
    for r in 0..s[0] {
        let t = x.ids[r] as usize;
        let off = (t + v / 2) % v;
        let (clean, blind) = x.f.split_at_mut(1);
        let (a, b) = (&mut clean[0][r * v..(r + 1) * v], &mut blind[0][r * v..(r + 1) * v]);
        match r % 8 {
            0 => a[off] = f32::NAN,
            1 => b[off] = f32::NAN,
            2 => a[off] = f32::INFINITY,
            3 => a[off] = f32::NEG_INFINITY,
            4 => b[off] = f32::NEG_INFINITY,
            5 => b[t] = f32::NEG_INFINITY,
            6 => a[t] = f32::NEG_INFINITY,
            _ => a.fill(f32::NEG_INFINITY),
        }
    }
    x
}

/// The logits rows as for the row kernels, and per token a NaN old log-prob (token 7) and
/// a NaN advantage (token 8).
fn policy_nonfinite_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = policy_inputs(s, rng);
    poison_rows(&mut x.f[0], s[1], Some(&x.ids.clone()));
    if s[0] > 8 {
        x.f[1][7 * 4] = f32::NAN;
        x.f[1][8 * 4 + 1] = f32::NAN;
    }
    x
}

/// A NaN in one query row, +inf and -inf in two keys of the first KV head.
fn attn_nonfinite_inputs(s: &[usize], rng: &mut Rng) -> Inputs {
    let mut x = attn_inputs(s, rng);
    let d = s[5];
    x.f[0][d] = f32::NAN;
    x.f[1][2 * d] = f32::INFINITY;
    x.f[1][5 * d + 1] = f32::NEG_INFINITY;
    x
}

/// The check `base` with other inputs and shapes.
fn on(base: &KernelCheck, name: &'static str, shapes: &'static [&'static [usize]], inputs: fn(&[usize], &mut Rng) -> Inputs) -> KernelCheck {
    KernelCheck { name, tols: base.tols, shapes, extra_shapes: &[], inputs, run: base.run, reference: base.reference }
}

/// The non-finite variants of the checks in `base`.
pub fn all(base: &[KernelCheck]) -> Vec<KernelCheck> {
    let find = |name: &str| base.iter().find(|c| c.name == name).expect("base check exists");
    vec![
        on(find("row_max"), "row_max_nonfinite", ROWS, rows_inputs),
        on(find("softmax"), "softmax_nonfinite", ROWS, rows_inputs),
        on(find("log_softmax"), "log_softmax_nonfinite", ROWS, rows_inputs),
        on(find("rms_norm"), "rms_norm_nonfinite", ROWS, rms_nonfinite_inputs),
        on(find("cross_entropy"), "cross_entropy_nonfinite", &[&[7, 33], &[12, 1000]], ce_nonfinite_inputs),
        on(find("attention_causal"), "attention_nonfinite", &[&[1, 2, 1, 9, 9, 4], &[2, 4, 2, 37, 37, 16], &[1, 2, 1, 70, 70, 128]], attn_nonfinite_inputs),
        on(find("attention_key_mask"), "attention_key_mask_nonfinite", &[&[2, 4, 2, 37, 37, 16], &[1, 2, 2, 20, 45, 64]], attn_nonfinite_inputs),
        on(find("kl_dual"), "kl_dual_nonfinite", &[&[8, 33], &[16, 1000]], kl_nonfinite_inputs),
        on(find("policy_loss"), "policy_loss_nonfinite", &[&[12, 77], &[12, 1000]], policy_nonfinite_inputs),
    ]
}
