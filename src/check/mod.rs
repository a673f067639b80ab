//! The correctness harness behind `pgpo check` and the test suite. Each kernel has seeded
//! random inputs (never zeros) at several shapes, odd sizes and sizes past one tile among
//! them, a naive f64 reference, and a tolerance |got - want| <= atol + rtol * |want|.
//! A GPU backend is compared with the CPU backend; the CPU backend with the f64 reference.
//! Output buffers are poisoned first (NaN, or a finite sentinel on alternate cases), so an
//! element a kernel skips fails; non-finite references match by class.

mod cases;
mod linear;
mod nonfinite;
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

#[derive(Clone, Copy)]
pub struct KernelCheck {
    pub name: &'static str,
    /// (atol, rtol) of each output, in order: one entry per output tensor, each as tight as
    /// f32 allows for that output.
    pub tols: &'static [(f64, f64)],
    /// Case descriptions; each kernel documents how it reads them.
    pub shapes: &'static [&'static [usize]],
    /// Larger cases: on the CPU against the f64 reference, on a GPU against the CPU. Kept out
    /// of `shapes` so a costly reference (finite differences of a backward) stays optional.
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
/// Finite references need |got - want| <= atol + rtol |want|. Non-finite references match
/// by class: NaN only with NaN, +inf only with +inf, -inf only with -inf. Any mismatch of
/// class or of length counts as an infinite error.
pub fn compare(got: &[f32], want: &[f64], atol: f64, rtol: f64) -> (f64, f64) {
    if got.len() != want.len() {
        return (f64::INFINITY, f64::INFINITY);
    }
    let mut max_abs = 0.0f64;
    let mut worst = 0.0f64;
    for (&g, &w) in got.iter().zip(want) {
        let g = f64::from(g);
        let (abs, ratio) = if w.is_finite() {
            let err = (g - w).abs();
            // A NaN or infinite result against a finite reference is an infinite error.
            if err.is_finite() { (err, err / (atol + rtol * w.abs())) } else { (f64::INFINITY, f64::INFINITY) }
        } else if (w.is_nan() && g.is_nan()) || g == w {
            (0.0, 0.0)
        } else {
            (f64::INFINITY, f64::INFINITY)
        };
        max_abs = max_abs.max(abs);
        worst = worst.max(ratio);
    }
    (max_abs, worst)
}

/// Compares every output of a case with its reference and tolerance. The outputs are
/// counted, not zipped: a missing or extra tensor (or tolerance) is an error.
pub fn compare_outputs(got: &[Vec<f32>], want: &[Vec<f64>], tols: &[(f64, f64)]) -> std::result::Result<(f64, f64), String> {
    if got.len() != want.len() || tols.len() != want.len() {
        return Err(format!("{} outputs, {} references, {} tolerances", got.len(), want.len(), tols.len()));
    }
    let (mut max_abs, mut worst) = (0.0f64, 0.0f64);
    for (i, ((g, w), &(atol, rtol))) in got.iter().zip(want).zip(tols).enumerate() {
        if g.len() != w.len() {
            return Err(format!("output {i} has {} elements, its reference {}", g.len(), w.len()));
        }
        let (abs, ratio) = compare(g, w, atol, rtol);
        max_abs = max_abs.max(abs);
        worst = worst.max(ratio);
    }
    Ok((max_abs, worst))
}

/// Poison for the outputs of case `i`: NaN, and on every other case a finite sentinel, so an
/// element left unwritten fails even where the reference is NaN.
fn poison_for(case: usize) -> f32 {
    if case % 2 == 0 { f32::NAN } else { -7.25e33 }
}

/// Largest case dimension run on the CUDA emulation.
const EMU_MAX_DIM: usize = 65_535;

fn seed(name: &str, case: usize) -> u64 {
    name.bytes().fold(case as u64 + 1, |h, b| h.wrapping_mul(0x100_0000_01B3) ^ u64::from(b))
}

/// Runs every case of `check` on `dev`, against the CPU backend (or, for the CPU itself,
/// against the f64 reference).
pub fn run(check: &KernelCheck, dev: &Device) -> CheckRow {
    run_cases(check, dev, usize::MAX)
}

/// `run` over the first `max_cases` cases only (the smallest shapes come first).
pub fn run_cases(check: &KernelCheck, dev: &Device, max_cases: usize) -> CheckRow {
    let mut row = CheckRow {
        kernel: check.name,
        backend: dev.name(),
        max_abs_err: 0.0,
        worst_ratio: 0.0,
        pass: true,
        error: None,
    };
    for (i, shape) in check.shapes.iter().chain(check.extra_shapes).enumerate().take(max_cases) {
        // The emulation runs blocks one at a time with an OS thread per GPU thread: the
        // cases of 66000 rows (tens of thousands of blocks) would take minutes there. A 1-D
        // case (elements, a few per block) still runs.
        if dev.kind() == "cuda-emu" && shape.len() > 1 && shape.iter().any(|&d| d > EMU_MAX_DIM) {
            continue;
        }
        let inputs = (check.inputs)(shape, &mut Rng::new(seed(check.name, i)));
        crate::set_poison(Some(poison_for(i)));
        let outcome = (|| -> Result<(Vec<Vec<f32>>, Vec<Vec<f64>>)> {
            let got = (check.run)(dev, shape, &inputs)?.iter().map(Tensor::to_vec).collect::<Result<Vec<_>>>()?;
            let want: Vec<Vec<f64>> = match dev {
                Device::Cpu => (check.reference)(shape, &inputs),
                #[allow(unreachable_patterns)]
                _ => (check.run)(&Device::Cpu, shape, &inputs)?
                    .iter()
                    .map(|t| t.to_vec().map(|v| v.into_iter().map(f64::from).collect()))
                    .collect::<Result<_>>()?,
            };
            Ok((got, want))
        })();
        crate::set_poison(None);
        let compared = outcome.map_err(|e| e.to_string()).and_then(|(g, w)| compare_outputs(&g, &w, check.tols));
        match compared {
            Ok((abs, ratio)) => {
                row.max_abs_err = row.max_abs_err.max(abs);
                row.worst_ratio = row.worst_ratio.max(ratio);
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
