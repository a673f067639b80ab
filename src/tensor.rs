//! Contiguous row-major f32 tensors with an explicit shape, on one device.

use crate::device::Device;
use crate::error::{Error, Result};
use half::{bf16, f16};
use std::sync::{Arc, OnceLock};

/// The buffer behind a tensor. Immutable once built: ops allocate fresh outputs.
pub enum Storage {
    Cpu(Vec<f32>),
    #[cfg(feature = "wgpu")]
    Wgpu(crate::backend::wgpu::GpuBuffer),
    #[cfg(feature = "cuda")]
    Cuda(cudarc::driver::CudaSlice<f32>),
    #[cfg(feature = "cuda-emu")]
    Emu(crate::backend::cuda_emu::EmuBuffer),
}

/// A buffer and its size, counted in the process's live and peak tensor bytes while it lives
/// (see `memory`): what `pgpo bench` reports as a row's `peak_bytes`.
pub(crate) struct Tracked {
    storage: Storage,
    bytes: usize,
}

impl Tracked {
    fn new(storage: Storage, elements: usize) -> Arc<Tracked> {
        let bytes = elements * 4;
        memory::allocated(bytes);
        Arc::new(Tracked { storage, bytes })
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        memory::freed(self.bytes);
    }
}

/// Bytes held by live tensors of every device, and their high-water mark.
pub mod memory {
    use std::sync::atomic::{AtomicUsize, Ordering};

    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);

    pub(super) fn allocated(bytes: usize) {
        let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
        PEAK.fetch_max(now, Ordering::Relaxed);
    }

    pub(super) fn freed(bytes: usize) {
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Starts a new high-water mark at the live bytes; returns them.
    pub fn reset_peak() -> usize {
        let now = LIVE.load(Ordering::Relaxed);
        PEAK.store(now, Ordering::Relaxed);
        now
    }

    /// The most bytes alive at once since the last `reset_peak`.
    pub fn peak() -> usize {
        PEAK.load(Ordering::Relaxed)
    }
}

#[derive(Clone)]
pub struct Tensor {
    shape: Vec<usize>,
    device: Device,
    storage: Arc<Tracked>,
    /// The CPU buffer as bf16 bit patterns when every value is exactly a bf16 (see
    /// `bf16_exact`), made on first use and shared, like the buffer, by clones and reshapes.
    bf16: Arc<OnceLock<Option<Box<[u16]>>>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?} on {}", self.shape, self.device.name())
    }
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Uploads `data` (row-major) as a tensor of `shape` on `device`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize], device: &Device) -> Result<Tensor> {
        if data.len() != numel(shape) {
            return Err(Error::shape(
                "from_vec",
                format!("{} values cannot fill shape {:?} ({} elements)", data.len(), shape, numel(shape)),
            ));
        }
        let storage = match device {
            Device::Cpu => Storage::Cpu(data),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Storage::Wgpu(d.upload(&data)?),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Storage::Cuda(d.upload(&data)?),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(d) => Storage::Emu(d.upload(&data)),
        };
        Ok(Tensor { shape: shape.to_vec(), device: device.clone(), storage: Tracked::new(storage, numel(shape)), bf16: Arc::default() })
    }

    pub fn from_slice(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    pub fn full(value: f32, shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(vec![value; numel(shape)], shape, device)
    }

    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full(0.0, shape, device)
    }

    /// Widens half-precision weights to f32 on load.
    pub fn from_f16(data: &[f16], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.iter().map(|x| x.to_f32()).collect(), shape, device)
    }

    pub fn from_bf16(data: &[bf16], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.iter().map(|x| x.to_f32()).collect(), shape, device)
    }

    /// An output tensor for a kernel to fill: NaN when poisoning is on; otherwise its
    /// contents are unspecified (pooled GPU buffers are reused), so kernels write every element.
    pub(crate) fn empty(shape: &[usize], device: &Device) -> Result<Tensor> {
        let n = numel(shape);
        let storage = match device {
            Device::Cpu => Storage::Cpu(crate::backend::cpu::alloc(n)),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Storage::Wgpu(d.alloc(n)?),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Storage::Cuda(d.alloc(n)?),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(d) => Storage::Emu(d.alloc(n)),
        };
        Ok(Tensor { shape: shape.to_vec(), device: device.clone(), storage: Tracked::new(storage, numel(shape)), bf16: Arc::default() })
    }

    /// Wraps a CPU result computed by a CPU kernel.
    pub(crate) fn from_cpu(data: Vec<f32>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), numel(shape));
        Tensor { shape: shape.to_vec(), device: Device::Cpu, storage: Tracked::new(Storage::Cpu(data), numel(shape)), bf16: Arc::default() }
    }

    /// Downloads to host memory, waiting for pending work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        match &self.storage.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => match &self.device {
                Device::Wgpu(d) => d.download(b, self.numel()),
                _ => unreachable!("wgpu storage always lives on a wgpu device"),
            },
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => match &self.device {
                Device::Cuda(d) => d.download(s),
                _ => unreachable!("cuda storage always lives on a cuda device"),
            },
            #[cfg(feature = "cuda-emu")]
            Storage::Emu(b) => Ok(b.read()),
        }
    }

    pub fn to_f16_vec(&self) -> Result<Vec<f16>> {
        Ok(self.to_vec()?.into_iter().map(f16::from_f32).collect())
    }

    pub fn to_bf16_vec(&self) -> Result<Vec<bf16>> {
        Ok(self.to_vec()?.into_iter().map(bf16::from_f32).collect())
    }

    pub fn to_device(&self, device: &Device) -> Result<Tensor> {
        if self.device.same(device) {
            return Ok(self.clone());
        }
        Tensor::from_vec(self.to_vec()?, &self.shape, device)
    }

    /// Same data, new shape with the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", format!("cannot view {:?} as {:?}", self.shape, shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), device: self.device.clone(), storage: self.storage.clone(), bf16: self.bf16.clone() })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn storage(&self) -> &Storage {
        &self.storage.storage
    }

    /// The host data when the tensor lives on the CPU.
    pub fn as_cpu(&self) -> Option<&[f32]> {
        match &self.storage.storage {
            Storage::Cpu(v) => Some(v),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The values as bf16 bit patterns (the high 16 bits of each f32) when the tensor is on
    /// the CPU and every value is exactly a bf16, as in a checkpoint published in bf16 (None
    /// otherwise). The few-rows matmul streams these instead of the f32 values: the same
    /// products from half the bytes, for a decode step that is bound by reading its weights.
    /// Made once per buffer, on first call, and kept with it: a bf16 checkpoint's weights
    /// take 1.5 times their f32 size on the CPU once generation has used them. A tensor whose
    /// first values are not bf16 (any activation, any trained weight) is turned down after
    /// reading a few of them.
    pub fn bf16_exact(&self) -> Option<&[u16]> {
        let x = self.as_cpu()?;
        self.bf16.get_or_init(|| crate::backend::cpu::bf16_bits(x)).as_deref()
    }

    /// The host data to write in place, when the tensor lives on the CPU and nothing else
    /// holds it (tensors are shared by cloning; a shared one must not change under its owners).
    pub(crate) fn cpu_mut(&mut self) -> Option<&mut [f32]> {
        // The values may change: a bf16 copy made of the old ones must go.
        self.bf16 = Arc::default();
        match &mut Arc::get_mut(&mut self.storage)?.storage {
            Storage::Cpu(v) => Some(v),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Whether another clone shares this tensor's buffer.
    pub(crate) fn is_shared(&self) -> bool {
        Arc::strong_count(&self.storage) > 1
    }

    /// The size of the last axis and the number of rows before it (a scalar is one row of one).
    pub fn rows_cols(&self) -> (usize, usize) {
        let cols = self.shape.last().copied().unwrap_or(1);
        (if cols == 0 { 0 } else { self.numel() / cols }, cols)
    }
}
