//! Device runtimes. The CPU backend holds the reference kernels; the GPU backends share one
//! launch description, so an op states its kernel, bindings, parameters and grid once.

// With a GPU backend compiled out, parts of the shared launch description go unread.
#![cfg_attr(not(all(feature = "wgpu", feature = "cuda")), allow(dead_code, unused_variables))]

pub mod cpu;
pub mod transfers;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(feature = "cuda-emu")]
pub mod cuda_emu;
#[cfg(feature = "wgpu")]
pub mod wgpu;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::tensor::Tensor;

/// Every kernel family: the file stem in shaders/ and cuda/, and its entry points (CUDA
/// instantiates the three attention row kernels per head size bucket, suffixed `_d32`,
/// `_d64`, `_d80` and `_d128`; see `ops::attention`).
pub const KERNEL_FAMILIES: &[(&str, &[&str])] = &[
    ("elementwise", &["fill", "add", "mul", "scale", "dropout", "silu", "gelu_tanh", "gelu_erf"]),
    ("reduce", &["row_sum", "row_max"]),
    ("softmax", &["softmax", "log_softmax"]),
    ("matmul", &["matmul"]),
    ("embedding", &["gather", "scatter_add"]),
    ("permute", &["permute"]),
    ("concat", &["copy_block"]),
    ("rms_norm", &["rms_norm", "rms_norm_backward", "rms_norm_dweight_partial", "rms_norm_dweight"]),
    ("rope", &["rope"]),
    ("attention", &["attention_forward", "attention_delta", "attention_backward_dq", "attention_backward_dkv"]),
    ("cross_entropy", &["cross_entropy_forward", "cross_entropy_backward"]),
    ("adamw", &["adamw", "sum_squares"]),
    ("kl_dual", &["kl_dual"]),
    ("pgpo_weights", &["pgpo_weights"]),
    ("policy_loss", &["policy_loss"]),
];

thread_local! {
    static OWN_KERNELS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the vendor libraries (cuBLAS) off on this thread, so every launch it makes
/// runs pgpo's own kernel: `pgpo check`'s `*_nvrtc` cases keep the fallback checked where
/// the library is present.
pub fn with_own_kernels<T>(f: impl FnOnce() -> T) -> T {
    let before = OWN_KERNELS.with(|o| o.replace(true));
    let out = f();
    OWN_KERNELS.with(|o| o.set(before));
    out
}

/// Whether this thread asked for pgpo's own kernels only (`with_own_kernels`), or the
/// environment did (`PGPO_CUBLAS=0`).
#[cfg(feature = "cuda")]
pub(crate) fn own_kernels_only() -> bool {
    OWN_KERNELS.with(|o| o.get()) || std::env::var("PGPO_CUBLAS").as_deref() == Ok("0")
}

/// u32 data on a device (token ids, offsets), uploaded by the op that needs it.
pub enum IndexBuffer {
    #[cfg(feature = "wgpu")]
    Wgpu(wgpu::GpuBuffer),
    #[cfg(feature = "cuda")]
    Cuda(cudarc::driver::CudaSlice<u32>),
    #[cfg(feature = "cuda-emu")]
    Emu(Box<[u32]>),
}

/// One kernel argument, in the order of the CUDA signature; `binding` is its WGSL binding.
pub(crate) enum Buf<'a> {
    /// An f32 tensor (a half-precision one is refused before the launch).
    F32(&'a Tensor),
    /// A tensor the kernel reads in any dtype (bound as 32-bit words; the launch passes the
    /// dtype's code as a constant or parameter).
    Any(&'a Tensor),
    U32(&'a IndexBuffer),
}

/// The workgroup grid. `Rows` launches `groups` workgroups of 256 threads; WGSL folds them
/// into (x, y) past 65535 and reads the fold width from parameter word `slot`.
pub(crate) enum Grid {
    Rows { groups: u32, slot: usize },
    Xyz(u32, u32, u32),
}

impl Grid {
    /// One thread per element, 256 per workgroup.
    pub fn elements(n: usize, slot: usize) -> Grid {
        Grid::Rows { groups: n.div_ceil(256) as u32, slot }
    }
}

pub(crate) struct Launch<'a> {
    pub family: &'static str,
    pub kernel: &'static str,
    pub bindings: &'a [(u32, Buf<'a>)],
    pub params: Params,
    pub grid: Grid,
    /// WGSL specialization constants (CUDA reads the same flags from `params`).
    pub constants: &'a [(&'static str, f64)],
    /// Threads per workgroup: the CUDA block size, fixed by @workgroup_size in WGSL.
    pub threads: u32,
}

impl Device {
    pub(crate) fn launch(&self, l: &Launch<'_>) -> Result<()> {
        for (i, (_, b)) in l.bindings.iter().enumerate() {
            if let Buf::F32(t) = b {
                if t.dtype() != crate::tensor::Dtype::F32 {
                    return Err(Error::shape(
                        l.kernel,
                        format!("argument {i} {:?} is {}, and {} reads f32 (only matmul and gather read bf16/f16 weights)", t.shape(), t.dtype(), l.kernel),
                    ));
                }
            }
        }
        match self {
            Device::Cpu => Err(Error::Unavailable { backend: "cpu", reason: "GPU launch on the CPU device".into() }),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => d.launch(l),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.launch(l),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(d) => d.launch(l),
        }
    }

    pub(crate) fn upload_u32(&self, data: &[u32]) -> Result<IndexBuffer> {
        if !matches!(self, Device::Cpu) {
            transfers::write(4 * data.len());
        }
        match self {
            Device::Cpu => Err(Error::Unavailable { backend: "cpu", reason: "index upload on the CPU device".into() }),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Ok(IndexBuffer::Wgpu(d.upload_u32(data)?)),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Ok(IndexBuffer::Cuda(d.upload_u32(data)?)),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(_) => Ok(IndexBuffer::Emu(data.into())),
        }
    }
}
