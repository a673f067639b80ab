//! pgpo: hand-written kernels on a CPU reference, wgpu (WGSL) and CUDA (NVRTC), and the
//! perception-grounded policy optimisation trainer built on them. See README.md and
//! ../shared/DESIGN.md for the map.

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod check;
pub mod device;
pub mod error;
pub mod io;
pub mod ops;
pub mod params;
pub mod rl;
pub mod rng;
pub mod tensor;
pub mod toy;
pub mod train;

pub use device::Device;
pub use error::{Error, Result};
pub use tensor::Tensor;

use std::sync::atomic::{AtomicBool, Ordering};

static POISON_OUTPUTS: AtomicBool = AtomicBool::new(false);

/// When on, every freshly allocated output buffer on every backend is filled with NaN
/// instead of zeros, so a kernel that skips an element is caught by the comparison.
/// The correctness harness turns it on; it costs one fill per allocation.
pub fn set_poison_outputs(on: bool) {
    POISON_OUTPUTS.store(on, Ordering::Relaxed);
}

pub(crate) fn poison_outputs() -> bool {
    POISON_OUTPUTS.load(Ordering::Relaxed)
}
