//! Contiguous row-major tensors with an explicit shape and dtype, on one device. Activations
//! and gradients are f32; weights may stay in their stored bf16 or f16 (half the bytes),
//! which matmul and gather read directly and widen to f32 in registers.

use crate::device::Device;
use crate::error::{Error, Result};
use half::{bf16, f16};
use std::sync::Arc;

/// The element type of a tensor's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    BF16,
    F16,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::BF16 | Dtype::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "f32",
            Dtype::BF16 => "bf16",
            Dtype::F16 => "f16",
        }
    }

    /// The kernels' code for the dtype (a WGSL override constant, a CUDA parameter word).
    pub fn code(self) -> u32 {
        match self {
            Dtype::F32 => 0,
            Dtype::BF16 => 1,
            Dtype::F16 => 2,
        }
    }

    /// f32 value of one half-precision bit pattern (`self` is BF16 or F16).
    pub fn widen(self, bits: u16) -> f32 {
        match self {
            Dtype::BF16 => bf16::from_bits(bits).to_f32(),
            Dtype::F16 => f16::from_bits(bits).to_f32(),
            Dtype::F32 => unreachable!("widen reads half-precision bits"),
        }
    }

    /// The nearest half-precision value's bits (round to nearest even; `self` is BF16 or F16).
    pub fn narrow(self, v: f32) -> u16 {
        match self {
            Dtype::BF16 => bf16::from_f32(v).to_bits(),
            Dtype::F16 => f16::from_f32(v).to_bits(),
            Dtype::F32 => unreachable!("narrow makes half-precision bits"),
        }
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The buffer behind a tensor. Immutable once built: ops allocate fresh outputs. A GPU buffer
/// of a half-precision tensor holds its values packed two to a 32-bit word (element 2i in the
/// low half), so every backend binds it as words and widens with shifts.
pub enum Storage {
    Cpu(Vec<f32>),
    /// bf16 or f16 bit patterns on the host.
    CpuHalf(Vec<u16>),
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
    dtype: Dtype,
    bytes: usize,
}

impl Tracked {
    fn new(storage: Storage, elements: usize) -> Arc<Tracked> {
        Tracked::with_dtype(storage, elements, Dtype::F32)
    }

    fn with_dtype(storage: Storage, elements: usize, dtype: Dtype) -> Arc<Tracked> {
        let bytes = elements * dtype.size();
        memory::allocated(bytes);
        Arc::new(Tracked { storage, dtype, bytes })
    }
}

/// Half-precision bits packed two to a word (element 2i in the low 16 bits), the last word
/// padded with zero: the layout of a half tensor on a GPU.
pub(crate) fn pack_words(bits: &[u16]) -> Vec<u32> {
    bits.chunks(2).map(|c| u32::from(c[0]) | (u32::from(*c.get(1).unwrap_or(&0)) << 16)).collect()
}

/// The first `n` half-precision bit patterns of packed words.
pub(crate) fn unpack_words(words: &[u32], n: usize) -> Vec<u16> {
    words.iter().flat_map(|&w| [w as u16, (w >> 16) as u16]).take(n).collect()
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
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor{:?} {} on {}", self.shape, self.dtype(), self.device.name())
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
        if !matches!(device, Device::Cpu) {
            crate::backend::transfers::write(4 * data.len());
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
        Ok(Tensor { shape: shape.to_vec(), device: device.clone(), storage: Tracked::new(storage, numel(shape)) })
    }

    pub fn from_slice(data: &[f32], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape, device)
    }

    /// Every element `value`. On a GPU the device writes it (the `fill` kernel): no host
    /// buffer of the tensor's size and no upload (a KV cache or AdamW's moments).
    pub fn full(value: f32, shape: &[usize], device: &Device) -> Result<Tensor> {
        if matches!(device, Device::Cpu) {
            return Tensor::from_vec(vec![value; numel(shape)], shape, device);
        }
        let out = Tensor::empty(shape, device)?;
        let n = u32::try_from(out.numel()).map_err(|_| Error::shape("fill", format!("{:?} has more than 2^32 elements", shape)))?;
        device.launch(&crate::backend::Launch {
            family: "elementwise",
            kernel: "fill",
            bindings: &[(2, crate::backend::Buf::F32(&out))],
            params: crate::params::Params::new(&[n, 0, value.to_bits()]),
            grid: crate::backend::Grid::elements(out.numel(), 3),
            constants: &[],
            threads: 256,
        })?;
        Ok(out)
    }

    pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::full(0.0, shape, device)
    }

    /// An f16 tensor (two bytes a value on the device).
    pub fn from_f16(data: &[f16], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_half_bits(data.iter().map(|x| x.to_bits()).collect(), Dtype::F16, shape, device)
    }

    /// A bf16 tensor (two bytes a value on the device).
    pub fn from_bf16(data: &[bf16], shape: &[usize], device: &Device) -> Result<Tensor> {
        Tensor::from_half_bits(data.iter().map(|x| x.to_bits()).collect(), Dtype::BF16, shape, device)
    }

    /// A half-precision tensor from its bit patterns (`dtype` BF16 or F16).
    pub fn from_half_bits(bits: Vec<u16>, dtype: Dtype, shape: &[usize], device: &Device) -> Result<Tensor> {
        if dtype == Dtype::F32 {
            return Err(Error::shape("from_half_bits", "the dtype must be bf16 or f16"));
        }
        if bits.len() != numel(shape) {
            return Err(Error::shape(
                "from_half_bits",
                format!("{} values cannot fill shape {:?} ({} elements)", bits.len(), shape, numel(shape)),
            ));
        }
        if !matches!(device, Device::Cpu) {
            crate::backend::transfers::write(2 * bits.len());
        }
        let storage = match device {
            Device::Cpu => Storage::CpuHalf(bits),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => Storage::Wgpu(d.upload_u32(&pack_words(&bits))?),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => Storage::Cuda(d.upload_words(&pack_words(&bits))?),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(d) => Storage::Emu(d.upload_words(&pack_words(&bits))),
        };
        Ok(Tensor { shape: shape.to_vec(), device: device.clone(), storage: Tracked::with_dtype(storage, numel(shape), dtype) })
    }

    /// The element type of the storage.
    pub fn dtype(&self) -> Dtype {
        self.storage.dtype
    }

    /// The same values stored as `dtype` (rounded to nearest even when narrowing). A load-time
    /// conversion through the host: kernels read half-precision weights directly instead.
    pub fn to_dtype(&self, dtype: Dtype) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let v = self.to_vec()?;
        match dtype {
            Dtype::F32 => Tensor::from_vec(v, &self.shape, &self.device),
            half => Tensor::from_half_bits(v.iter().map(|&x| half.narrow(x)).collect(), half, &self.shape, &self.device),
        }
    }

    /// The bit patterns of a half-precision tensor (None for f32), from any device.
    pub fn to_half_bits(&self) -> Result<Option<Vec<u16>>> {
        if self.dtype() == Dtype::F32 {
            return Ok(None);
        }
        let n = self.numel();
        Ok(Some(match &self.storage.storage {
            Storage::CpuHalf(v) => v.clone(),
            _ => unpack_words(&self.raw_words()?, n),
        }))
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
        Ok(Tensor { shape: shape.to_vec(), device: device.clone(), storage: Tracked::new(storage, numel(shape)) })
    }

    /// Wraps a CPU result computed by a CPU kernel.
    pub(crate) fn from_cpu(data: Vec<f32>, shape: &[usize]) -> Tensor {
        debug_assert_eq!(data.len(), numel(shape));
        Tensor { shape: shape.to_vec(), device: Device::Cpu, storage: Tracked::new(Storage::Cpu(data), numel(shape)) }
    }

    /// Downloads to host memory as f32 (half-precision values widen exactly), waiting for
    /// pending work.
    pub fn to_vec(&self) -> Result<Vec<f32>> {
        let dtype = self.dtype();
        if let Some(bits) = self.to_half_bits()? {
            return Ok(bits.into_iter().map(|b| dtype.widen(b)).collect());
        }
        self.raw_f32()
    }

    /// The storage's 32-bit words (half-precision values packed two to a word).
    fn raw_words(&self) -> Result<Vec<u32>> {
        Ok(self.raw_f32()?.into_iter().map(f32::to_bits).collect())
    }

    /// The device buffer's words as f32, `numel` of them for f32 and half as many (rounded up)
    /// for half precision.
    #[cfg_attr(not(any(feature = "wgpu", feature = "cuda", feature = "cuda-emu")), allow(unused_variables))]
    fn raw_f32(&self) -> Result<Vec<f32>> {
        let words = if self.dtype() == Dtype::F32 { self.numel() } else { self.numel().div_ceil(2) };
        if !matches!(self.device, Device::Cpu) {
            crate::backend::transfers::read(4 * words);
        }
        match &self.storage.storage {
            Storage::Cpu(v) => Ok(v.clone()),
            Storage::CpuHalf(v) => Ok(pack_words(v).into_iter().map(f32::from_bits).collect()),
            #[cfg(feature = "wgpu")]
            Storage::Wgpu(b) => match &self.device {
                Device::Wgpu(d) => d.download(b, words),
                _ => unreachable!("wgpu storage always lives on a wgpu device"),
            },
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => match &self.device {
                Device::Cuda(d) => d.download(s),
                _ => unreachable!("cuda storage always lives on a cuda device"),
            },
            #[cfg(feature = "cuda-emu")]
            Storage::Emu(b) => Ok(b.read().into_iter().take(words).collect()),
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
        match self.to_half_bits()? {
            Some(bits) => Tensor::from_half_bits(bits, self.dtype(), &self.shape, device),
            None => Tensor::from_vec(self.to_vec()?, &self.shape, device),
        }
    }

    /// Same data, new shape with the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(Error::shape("reshape", format!("cannot view {:?} as {:?}", self.shape, shape)));
        }
        Ok(Tensor { shape: shape.to_vec(), device: self.device.clone(), storage: self.storage.clone() })
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

    /// The host bit patterns and dtype of a half-precision tensor on the CPU.
    pub fn as_cpu_half(&self) -> Option<(&[u16], Dtype)> {
        match &self.storage.storage {
            Storage::CpuHalf(v) => Some((v, self.dtype())),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The host data to write in place, when the tensor lives on the CPU and nothing else
    /// holds it (tensors are shared by cloning; a shared one must not change under its owners).
    pub(crate) fn cpu_mut(&mut self) -> Option<&mut [f32]> {
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
