//! Adapter choice. `WGPU_BACKEND` (comma list: vulkan, metal, dx12, gl) names the APIs to
//! search; unset or empty means the native APIs (Vulkan, Metal, DX12). GL is searched only
//! when named: wgpu's GLES backend panics inside wgpu-hal on some of pgpo's kernels (seen
//! with Mesa's llvmpipe GL on a machine without Vulkan: log_softmax, pgpo_weights, rms_norm,
//! policy_loss), and a clear "no adapter" beats a backend that aborts mid-run. `PGPO_WGPU_ADAPTER` picks an adapter whose name
//! contains the given text. Otherwise the best device type wins: discrete, integrated,
//! virtual, then CPU (lavapipe).

use crate::error::{Error, Result};

/// The APIs named by `WGPU_BACKEND`, or `None` when it is unset or empty.
pub fn backends_from_env() -> Result<Option<wgpu::Backends>> {
    match std::env::var("WGPU_BACKEND") {
        Ok(v) if !v.trim().is_empty() => {
            let b = wgpu::Backends::from_comma_list(&v);
            if b.is_empty() {
                Err(Error::Unavailable {
                    backend: "wgpu",
                    reason: format!("WGPU_BACKEND={v:?} names no known API (try vulkan, metal, dx12 or gl)"),
                })
            } else {
                Ok(Some(b))
            }
        }
        _ => Ok(None),
    }
}

fn adapters_of(backends: wgpu::Backends) -> Vec<wgpu::Adapter> {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    pollster::block_on(instance.enumerate_adapters(backends))
}

fn rank(info: &wgpu::AdapterInfo) -> u32 {
    match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

/// Every adapter on the APIs searched, best first.
pub fn enumerate() -> Result<Vec<wgpu::Adapter>> {
    let mut adapters = match backends_from_env()? {
        Some(named) => adapters_of(named),
        None => adapters_of(wgpu::Backends::PRIMARY),
    };
    adapters.sort_by_key(|a| rank(&a.get_info()));
    Ok(adapters)
}

pub fn choose() -> Result<wgpu::Adapter> {
    let adapters = enumerate()?;
    if adapters.is_empty() {
        return Err(Error::Unavailable {
            backend: "wgpu",
            reason: "no Vulkan, Metal or DX12 adapter found (on Linux without a GPU, install Mesa's software Vulkan driver: apt-get install mesa-vulkan-drivers; WGPU_BACKEND=gl tries OpenGL, which pgpo does not support)".into(),
        });
    }
    match std::env::var("PGPO_WGPU_ADAPTER") {
        Ok(want) if !want.trim().is_empty() => {
            let want_lc = want.to_lowercase();
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters.into_iter().find(|a| a.get_info().name.to_lowercase().contains(&want_lc)).ok_or_else(|| {
                Error::Unavailable {
                    backend: "wgpu",
                    reason: format!("PGPO_WGPU_ADAPTER={want:?} matches none of {names:?}"),
                }
            })
        }
        _ => adapters.into_iter().next().ok_or_else(|| Error::Unavailable { backend: "wgpu", reason: "no adapter".into() }),
    }
}
