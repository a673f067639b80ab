//! pgpo: hand-written kernels on a CPU reference, wgpu (WGSL) and CUDA (NVRTC), and the
//! perception-grounded policy optimisation trainer built on them. See README.md and
//! ../shared/DESIGN.md for the map.

pub mod autograd;
pub mod backend;
pub mod bench;
pub mod check;
pub mod device;
pub mod error;
pub mod image;
pub mod io;
pub(crate) mod json_fields;
pub mod model;
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

use std::cell::Cell;

thread_local! {
    /// The poison value of this thread's new output buffers, when poisoning is on. Per
    /// thread, so tests running in parallel cannot turn each other's poisoning off; every
    /// backend allocates its outputs on the calling thread.
    static POISON: Cell<Option<f32>> = const { Cell::new(None) };
}

/// When on, every output buffer this thread allocates next, on every backend, is filled with
/// NaN instead of zeros, so a kernel that skips an element is caught by the comparison.
/// The correctness harness turns it on; it costs one fill per allocation.
pub fn set_poison_outputs(on: bool) {
    set_poison(on.then_some(f32::NAN));
}

/// Like `set_poison_outputs`, with the fill value chosen (`None` turns poisoning off).
pub fn set_poison(value: Option<f32>) {
    POISON.with(|p| p.set(value));
}

/// The fill value of new output buffers, when poisoning is on for this thread.
pub(crate) fn poison_value() -> Option<f32> {
    POISON.with(Cell::get)
}
