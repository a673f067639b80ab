//! Kernel parameters: up to 16 32-bit words, passed as the WGSL uniform block and as the
//! CUDA `Params` struct (cuda/common.cuh). f32 values travel as their bit pattern.

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub words: [u32; 16],
}

#[cfg(feature = "cuda")]
unsafe impl cudarc::driver::DeviceRepr for Params {}

impl Params {
    /// Builds the block from u32 words in declaration order.
    pub fn new(words: &[u32]) -> Self {
        assert!(words.len() <= 16, "at most 16 parameter words");
        let mut p = Params::default();
        p.words[..words.len()].copy_from_slice(words);
        p
    }

    /// Overwrites the word at `slot` (used for the grid width, known only at launch).
    pub fn with(mut self, slot: usize, value: u32) -> Self {
        self.words[slot] = value;
        self
    }
}

/// A length or size as a kernel word; the op layer has already checked it fits.
pub fn word(x: usize) -> u32 {
    u32::try_from(x).expect("kernel sizes are validated against u32 before launch")
}
