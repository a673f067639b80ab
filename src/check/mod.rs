//! The correctness harness behind `pgpo check` and the test suite. Each kernel has seeded
//! random inputs (never zeros) at several shapes, odd sizes and sizes past one tile among
//! them, a naive f64 reference, and a tolerance |got - want| <= atol + rtol * |want|.
//! A GPU backend is compared with the CPU backend; the CPU backend with the f64 reference.
//! Output buffers are poisoned with NaN first, so an element a kernel skips fails.

mod cases;
pub mod reference;
mod rl;
mod transformer;

pub use cases::all;
pub use reference::erf_series;

use crate::device::Device;
use crate::error::Result;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// Random inputs of one case: f32 arrays and token ids.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub f: Vec<Vec<f32>>,
    pub ids: Vec<u32>,
}

pub struct KernelCheck {
    pub name: &'static str,
    pub atol: f64,
    pub rtol: f64,
    /// Case descriptions; each kernel documents how it reads them.
    pub shapes: &'static [&'static [usize]],
    /// Larger cases run only against the CPU backend (too costly for the f64 reference,
    /// e.g. finite differences of a backward).
    pub extra_shapes: &'static [&'static [usize]],
    pub inputs: fn(&[usize], &mut Rng) -> Inputs,
    pub run: fn(&Device, &[usize], &Inputs) -> Result<Vec<Tensor>>,
    pub reference: fn(&[usize], &Inputs) -> Vec<Vec<f64>>,
}

/// One row of the table: a kernel on a backend, with its worst error over every case.
#[derive(Clone, Debug)]
pub struct CheckRow {
    pub kernel: &'static str,
    pub backend: String,
    /// Largest |got - want| over all cases.
    pub max_abs_err: f64,
    /// Largest |got - want| / (atol + rtol |want|); the row passes when it is <= 1.
    pub worst_ratio: f64,
    pub pass: bool,
    pub error: Option<String>,
}

/// Compares `got` with `want` elementwise; returns (max abs error, worst tolerance ratio).
/// A NaN or a length mismatch counts as an infinite error.
pub fn compare(got: &[f32], want: &[f64], atol: f64, rtol: f64) -> (f64, f64) {
    if got.len() != want.len() {
        return (f64::INFINITY, f64::INFINITY);
    }
    let mut max_abs = 0.0f64;
    let mut worst = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        // Equal infinities (the lse of a row that sees no key) match.
        let err = if f64::from(g) == w { 0.0 } else { (f64::from(g) - w).abs() };
        let err = if err.is_nan() { f64::INFINITY } else { err };
        max_abs = max_abs.max(err);
        worst = worst.max(err / (atol + rtol * w.abs()));
    }
    (max_abs, worst)
}

fn seed(name: &str, case: usize) -> u64 {
    name.bytes().fold(case as u64 + 1, |h, b| h.wrapping_mul(0x100_0000_01B3) ^ u64::from(b))
}

/// Runs every case of `check` on `dev`, against the CPU backend (or, for the CPU itself,
/// against the f64 reference).
pub fn run(check: &KernelCheck, dev: &Device) -> CheckRow {
    crate::set_poison_outputs(true);
    let mut row = CheckRow {
        kernel: check.name,
        backend: dev.name(),
        max_abs_err: 0.0,
        worst_ratio: 0.0,
        pass: true,
        error: None,
    };
    let extra = if matches!(dev, Device::Cpu) { &[][..] } else { check.extra_shapes };
    for (i, shape) in check.shapes.iter().chain(extra).enumerate() {
        let inputs = (check.inputs)(shape, &mut Rng::new(seed(check.name, i)));
        let outcome = (|| -> Result<Vec<(Vec<f32>, Vec<f64>)>> {
            let got = (check.run)(dev, shape, &inputs)?;
            let want: Vec<Vec<f64>> = match dev {
                Device::Cpu => (check.reference)(shape, &inputs),
                #[allow(unreachable_patterns)]
                _ => (check.run)(&Device::Cpu, shape, &inputs)?
                    .iter()
                    .map(|t| t.to_vec().map(|v| v.into_iter().map(f64::from).collect()))
                    .collect::<Result<_>>()?,
            };
            got.iter().zip(want).map(|(g, w)| Ok((g.to_vec()?, w))).collect()
        })();
        match outcome {
            Ok(pairs) => {
                for (g, w) in pairs {
                    let (abs, ratio) = compare(&g, &w, check.atol, check.rtol);
                    row.max_abs_err = row.max_abs_err.max(abs);
                    row.worst_ratio = row.worst_ratio.max(ratio);
                }
            }
            Err(e) => {
                row.error = Some(format!("case {shape:?}: {e}"));
                row.pass = false;
                return row;
            }
        }
    }
    row.pass = row.worst_ratio <= 1.0;
    row
}

/// The check called `name`.
pub fn find(name: &str) -> Option<KernelCheck> {
    all().into_iter().find(|c| c.name == name)
}
