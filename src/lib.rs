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

use std::sync::atomic::{AtomicU64, Ordering};

/// The poison value's bits in the low 32, and bit 32 set when poisoning is on.
static POISON: AtomicU64 = AtomicU64::new(0);

/// When on, every freshly allocated output buffer on every backend is filled with NaN
/// instead of zeros, so a kernel that skips an element is caught by the comparison.
/// The correctness harness turns it on; it costs one fill per allocation.
pub fn set_poison_outputs(on: bool) {
    set_poison(on.then_some(f32::NAN));
}

/// Like `set_poison_outputs`, with the fill value chosen (`None` turns poisoning off).
pub fn set_poison(value: Option<f32>) {
    POISON.store(value.map_or(0, |v| (1 << 32) | u64::from(v.to_bits())), Ordering::Relaxed);
}

/// The fill value of new output buffers, when poisoning is on.
pub(crate) fn poison_value() -> Option<f32> {
    let p = POISON.load(Ordering::Relaxed);
    (p >> 32 == 1).then(|| f32::from_bits(p as u32))
}
