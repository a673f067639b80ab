//! Where tensors live, chosen at run time: `cpu`, `wgpu` or `cuda`.

use crate::error::{Error, Result};
#[cfg(any(feature = "wgpu", feature = "cuda", feature = "cuda-emu"))]
use std::sync::Arc;

#[derive(Clone)]
pub enum Device {
    Cpu,
    #[cfg(feature = "wgpu")]
    Wgpu(Arc<crate::backend::wgpu::WgpuDevice>),
    #[cfg(feature = "cuda")]
    Cuda(Arc<crate::backend::cuda::CudaDevice>),
    /// The CUDA kernels on a CPU emulation of the CUDA execution model (tests only).
    #[cfg(feature = "cuda-emu")]
    CudaEmu(Arc<crate::backend::cuda_emu::EmuDevice>),
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

impl Device {
    pub fn cpu() -> Device {
        Device::Cpu
    }

    /// The preferred wgpu adapter (see `backend::wgpu` for the choice and its overrides).
    #[cfg(feature = "wgpu")]
    pub fn wgpu() -> Result<Device> {
        crate::backend::wgpu::WgpuDevice::shared().map(Device::Wgpu)
    }

    #[cfg(not(feature = "wgpu"))]
    pub fn wgpu() -> Result<Device> {
        Err(Error::Unavailable { backend: "wgpu", reason: "pgpo was built without the `wgpu` feature".into() })
    }

    /// CUDA device `ordinal`. Returns `Err`, never panics, when the driver or NVRTC is missing.
    #[cfg(feature = "cuda")]
    pub fn cuda(ordinal: usize) -> Result<Device> {
        crate::backend::cuda::CudaDevice::shared(ordinal).map(Device::Cuda)
    }

    #[cfg(not(feature = "cuda"))]
    pub fn cuda(_ordinal: usize) -> Result<Device> {
        Err(Error::Unavailable { backend: "cuda", reason: "pgpo was built without the `cuda` feature".into() })
    }

    /// The CUDA kernels on the CPU emulation of the CUDA execution model (feature
    /// `cuda-emu`, for tests; never chosen by `auto`).
    #[cfg(feature = "cuda-emu")]
    pub fn cuda_emu() -> Result<Device> {
        Ok(Device::CudaEmu(crate::backend::cuda_emu::EmuDevice::shared()))
    }

    #[cfg(not(feature = "cuda-emu"))]
    pub fn cuda_emu() -> Result<Device> {
        Err(Error::Unavailable { backend: "cuda-emu", reason: "pgpo was built without the `cuda-emu` feature".into() })
    }

    /// A real GPU if there is one (CUDA first, then a wgpu adapter that is not a CPU), else the CPU.
    pub fn auto() -> Device {
        if let Ok(d) = Device::cuda(0) {
            return d;
        }
        #[cfg(feature = "wgpu")]
        if let Ok(Device::Wgpu(w)) = Device::wgpu()
            && w.is_hardware()
        {
            return Device::Wgpu(w);
        }
        Device::Cpu
    }

    /// Whether `name` is one `parse` accepts (auto, cpu, wgpu, cuda, cuda:N, cuda-emu), without
    /// opening a device: for checking a config when it is read.
    pub fn is_backend_name(name: &str) -> bool {
        ["auto", "cpu", "wgpu", "cuda", "cuda-emu"].contains(&name) || name.strip_prefix("cuda:").is_some_and(|n| n.parse::<usize>().is_ok())
    }

    /// Parses `auto|cpu|wgpu|cuda|cuda:N|cuda-emu`, as given to `--backend`.
    pub fn parse(name: &str) -> Result<Device> {
        match name {
            "auto" => Ok(Device::auto()),
            "cpu" => Ok(Device::Cpu),
            "wgpu" => Device::wgpu(),
            "cuda" => Device::cuda(0),
            "cuda-emu" => Device::cuda_emu(),
            other => match other.strip_prefix("cuda:").and_then(|n| n.parse().ok()) {
                Some(n) => Device::cuda(n),
                None => Err(Error::Unavailable {
                    backend: "unknown",
                    reason: format!("unknown backend {other:?}; expected auto, cpu, wgpu, cuda, cuda:N or cuda-emu"),
                }),
            },
        }
    }

    /// The backend family: "cpu", "wgpu" or "cuda".
    pub fn kind(&self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            #[cfg(feature = "wgpu")]
            Device::Wgpu(_) => "wgpu",
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => "cuda",
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(_) => "cuda-emu",
        }
    }

    /// Backend and adapter, for messages and tables.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => format!("wgpu ({})", d.adapter_name()),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => format!("cuda:{} ({})", d.ordinal(), d.name()),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(_) => "cuda-emu (the CUDA kernels on a CPU emulation)".into(),
        }
    }

    pub fn same(&self, other: &Device) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "wgpu")]
            (Device::Wgpu(a), Device::Wgpu(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda")]
            (Device::Cuda(a), Device::Cuda(b)) => Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda-emu")]
            (Device::CudaEmu(_), Device::CudaEmu(_)) => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The memory a run may use on this device, in bytes, and what it is: free GPU memory
    /// (CUDA), or the system's available memory for the CPU and for software adapters
    /// (lavapipe). `None` where the API cannot tell (wgpu on a hardware GPU).
    pub fn memory_budget(&self) -> Option<(u64, &'static str)> {
        let system = || available_system_memory().map(|b| (b, "available system memory (MemAvailable)"));
        match self {
            Device::Cpu => system(),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => if d.is_hardware() { None } else { system() },
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.free_memory().ok().map(|b| (b, "free GPU memory")),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(_) => system(),
        }
    }

    /// The largest buffer one kernel may bind, in bytes, where the backend has such a limit
    /// (wgpu's max_storage_buffer_binding_size, or max_buffer_size if lower).
    pub fn max_binding(&self) -> Option<(u64, &'static str)> {
        match self {
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => {
                let (bind, buf) = (u64::from(d.limits().max_storage_buffer_binding_size), d.limits().max_buffer_size);
                Some(if bind <= buf { (bind, "max_storage_buffer_binding_size") } else { (buf, "max_buffer_size") })
            }
            _ => None,
        }
    }

    /// Waits for all queued work and reports any error a kernel raised asynchronously.
    pub fn synchronize(&self) -> Result<()> {
        if !matches!(self, Device::Cpu) {
            crate::backend::transfers::wait();
        }
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "wgpu")]
            Device::Wgpu(d) => d.synchronize(),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.synchronize(),
            #[cfg(feature = "cuda-emu")]
            Device::CudaEmu(_) => Ok(()),
        }
    }
}

/// Gives the process a private, valid `XDG_RUNTIME_DIR` when it has none (or an unusable
/// one), so that Vulkan's window-system layers (Mesa's Wayland WSI, even under lavapipe) do
/// not print "XDG_RUNTIME_DIR is invalid or not set" to the user when wgpu enumerates
/// adapters. pgpo never opens a window; the folder only has to exist with mode 0700.
///
/// # Safety
/// Sets an environment variable: call it first thing in `main`, before any thread starts.
pub unsafe fn quiet_driver_env() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let uid = unsafe { libc::getuid() };
    let usable = std::env::var_os("XDG_RUNTIME_DIR")
        .map(std::path::PathBuf::from)
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0);
    if usable {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pgpo-runtime-{uid}"));
    let ok = std::fs::create_dir_all(&dir).is_ok()
        && std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).is_ok()
        && std::fs::metadata(&dir).is_ok_and(|m| m.uid() == uid);
    if ok {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", dir) };
    }
}

/// MemAvailable from /proc/meminfo, in bytes (Linux).
fn available_system_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
