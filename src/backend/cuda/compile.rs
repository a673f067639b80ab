//! CUDA C sources and NVRTC compilation. Works without a driver: `pgpo check --compile-only`
//! uses it to prove every kernel compiles, and CI assembles the PTX with ptxas.

use crate::error::{Error, Result};

const COMMON: &str = include_str!("../../../cuda/common.cuh");

/// The CUDA C source of a kernel family, compiled into the binary.
pub fn source(family: &str) -> Option<&'static str> {
    Some(match family {
        "elementwise" => include_str!("../../../cuda/elementwise.cu"),
        "reduce" => include_str!("../../../cuda/reduce.cu"),
        "softmax" => include_str!("../../../cuda/softmax.cu"),
        "matmul" => include_str!("../../../cuda/matmul.cu"),
        "embedding" => include_str!("../../../cuda/embedding.cu"),
        "permute" => include_str!("../../../cuda/permute.cu"),
        "concat" => include_str!("../../../cuda/concat.cu"),
        "rms_norm" => include_str!("../../../cuda/rms_norm.cu"),
        "rope" => include_str!("../../../cuda/rope.cu"),
        "attention" => include_str!("../../../cuda/attention.cu"),
        "cross_entropy" => include_str!("../../../cuda/cross_entropy.cu"),
        "adamw" => include_str!("../../../cuda/adamw.cu"),
        "kl_dual" => include_str!("../../../cuda/kl_dual.cu"),
        "pgpo_weights" => include_str!("../../../cuda/pgpo_weights.cu"),
        "policy_loss" => include_str!("../../../cuda/policy_loss.cu"),
        _ => return None,
    })
}

/// Why NVRTC cannot be used here, or `None` when its library loads.
pub fn nvrtc_missing() -> Option<String> {
    // SAFETY: only probes whether the shared library can be opened.
    if unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        None
    } else {
        Some("libnvrtc was not found on the library path (install the CUDA toolkit or `pip install nvidia-cuda-nvrtc-cu12` and add its lib/ to LD_LIBRARY_PATH)".into())
    }
}

/// Compiles one family to PTX for a virtual architecture such as "compute_80".
pub fn compile_ptx(family: &str, arch: &'static str) -> Result<String> {
    if let Some(reason) = nvrtc_missing() {
        return Err(Error::Unavailable { backend: "nvrtc", reason });
    }
    let body = source(family).ok_or_else(|| Error::Compile { kernel: family.into(), log: "no such CUDA file".into() })?;
    let src = format!("{COMMON}\n{body}");
    let opts = cudarc::nvrtc::CompileOptions {
        arch: Some(arch),
        name: Some(format!("{family}.cu")),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src, opts).map_err(|e| Error::Compile {
        kernel: format!("{family}.cu"),
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => format!("{other:?}"),
        },
    })?;
    Ok(ptx.to_src())
}
