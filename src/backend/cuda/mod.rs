//! The CUDA runtime through cudarc, loaded dynamically: a machine without libcuda or
//! libnvrtc gets `Err` from `CudaDevice::shared`, never a panic. Kernels are compiled by
//! NVRTC for the device's architecture on first use and cached per device.

pub mod blas;
pub mod compile;

use super::{Buf, Grid, IndexBuffer, Launch};
use crate::error::{Error, Result};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    arch: &'static str,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    /// cuBLAS, made on first use (`blas`); None where it cannot load.
    blas: OnceLock<Option<cudarc::cublas::CudaBlas>>,
}

fn cuda_err(e: impl std::fmt::Debug) -> Error {
    Error::Cuda(format!("{e:?}"))
}

/// Why the driver cannot be used here, or `None` when libcuda loads.
pub fn driver_missing() -> Option<String> {
    // SAFETY: only probes whether the shared library can be opened.
    if unsafe { cudarc::driver::sys::is_culib_present() } {
        None
    } else {
        Some("libcuda was not found (no NVIDIA driver on this machine)".into())
    }
}

static SHARED: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();

impl CudaDevice {
    /// The process-wide device for `ordinal`, created on first use.
    pub fn shared(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let mut map = SHARED.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(CudaDevice::new(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }

    pub fn new(ordinal: usize) -> Result<CudaDevice> {
        if let Some(reason) = driver_missing().or_else(compile::nvrtc_missing) {
            return Err(Error::Unavailable { backend: "cuda", reason });
        }
        let count = CudaContext::device_count().map_err(cuda_err)?;
        if ordinal >= count.max(0) as usize {
            return Err(Error::Unavailable { backend: "cuda", reason: format!("device {ordinal} requested, {count} present") });
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        let (major, minor) = ctx.compute_capability().map_err(cuda_err)?;
        let name = ctx.name().map_err(cuda_err)?;
        let arch: &'static str = Box::leak(format!("compute_{major}{minor}").into_boxed_str());
        Ok(CudaDevice { stream: ctx.default_stream(), ctx, name, arch, modules: Mutex::default(), blas: OnceLock::new() })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Free device memory in bytes.
    pub fn free_memory(&self) -> Result<u64> {
        let (free, _total) = self.ctx.mem_get_info().map_err(cuda_err)?;
        Ok(free as u64)
    }

    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    pub fn alloc(&self, n: usize) -> Result<CudaSlice<f32>> {
        if let Some(poison) = crate::poison_value() {
            return self.upload(&vec![poison; n]);
        }
        self.stream.alloc_zeros::<f32>(n.max(1)).map_err(cuda_err)
    }

    pub fn upload(&self, data: &[f32]) -> Result<CudaSlice<f32>> {
        if data.is_empty() {
            return self.stream.alloc_zeros::<f32>(1).map_err(cuda_err);
        }
        self.stream.clone_htod(data).map_err(cuda_err)
    }

    /// Packed half-precision words, held as f32-sized slots (see `tensor::Storage`).
    pub fn upload_words(&self, words: &[u32]) -> Result<CudaSlice<f32>> {
        let as_f32: Vec<f32> = words.iter().map(|&w| f32::from_bits(w)).collect();
        self.upload(&as_f32)
    }

    pub fn upload_u32(&self, data: &[u32]) -> Result<CudaSlice<u32>> {
        if data.is_empty() {
            return self.stream.alloc_zeros::<u32>(1).map_err(cuda_err);
        }
        self.stream.clone_htod(data).map_err(cuda_err)
    }

    pub fn download(&self, s: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(s).map_err(cuda_err)
    }

    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err)
    }

    fn function(&self, family: &'static str, kernel: &'static str) -> Result<CudaFunction> {
        let mut modules = self.modules.lock().unwrap_or_else(|p| p.into_inner());
        let module = match modules.get(family) {
            Some(m) => m.clone(),
            None => {
                let ptx = compile::compile_ptx(family, self.arch)?;
                let m = self.ctx.load_module(cudarc::nvrtc::Ptx::from_src(ptx)).map_err(cuda_err)?;
                modules.insert(family, m.clone());
                m
            }
        };
        module.load_function(kernel).map_err(cuda_err)
    }

    pub(crate) fn launch(&self, l: &Launch<'_>) -> Result<()> {
        let grid_dim = match l.grid {
            Grid::Rows { groups, .. } => (groups, 1, 1),
            Grid::Xyz(x, y, z) => (x, y, z),
        };
        if grid_dim.0 == 0 || grid_dim.1 == 0 || grid_dim.2 == 0 {
            return Ok(());
        }
        let f = self.function(l.family, l.kernel)?;
        let cfg = LaunchConfig { grid_dim, block_dim: (l.threads, 1, 1), shared_mem_bytes: 0 };
        let mut b = self.stream.launch_builder(&f);
        for (_, arg) in l.bindings {
            match arg {
                Buf::F32(t) | Buf::Any(t) => match t.storage() {
                    crate::tensor::Storage::Cuda(s) => b.arg(s),
                    _ => return Err(Error::Cuda(format!("{}: argument is not a cuda tensor", l.kernel))),
                },
                Buf::U32(IndexBuffer::Cuda(s)) => b.arg(s),
                #[allow(unreachable_patterns)]
                Buf::U32(_) => return Err(Error::Cuda(format!("{}: index argument is not on cuda", l.kernel))),
            };
        }
        b.arg(&l.params);
        // SAFETY: argument order and types follow the kernel signature in cuda/<family>.cu;
        // the op validated every size, and outputs were allocated for the whole grid.
        unsafe { b.launch(cfg) }.map_err(cuda_err)?;
        Ok(())
    }
}
