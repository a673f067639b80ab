//! `pgpo check`: every kernel on every backend present, and `--compile-only` for CUDA.

use pgpo::check;
use pgpo::Device;

#[cfg(feature = "cuda")]
pub fn compile_only(ptx_dir: Option<&std::path::Path>) -> pgpo::Result<bool> {
    use pgpo::backend::cuda::compile;
    if let Some(reason) = compile::nvrtc_missing() {
        return Err(pgpo::Error::Unavailable { backend: "nvrtc", reason });
    }
    if let Some(dir) = ptx_dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut ok = true;
    println!("{:<14} {:<11} {:>9}  result", "family", "arch", "ptx bytes");
    for (family, _) in pgpo::backend::KERNEL_FAMILIES {
        for arch in ["compute_80", "compute_90"] {
            match compile::compile_ptx(family, arch) {
                Ok(ptx) => {
                    println!("{family:<14} {arch:<11} {:>9}  pass", ptx.len());
                    if let Some(dir) = ptx_dir {
                        std::fs::write(dir.join(format!("{family}.{arch}.ptx")), &ptx)?;
                    }
                }
                Err(e) => {
                    ok = false;
                    println!("{family:<14} {arch:<11} {:>9}  FAIL\n{e}", "-");
                }
            }
        }
    }
    Ok(ok)
}

#[cfg(not(feature = "cuda"))]
pub fn compile_only(_: Option<&std::path::Path>) -> pgpo::Result<bool> {
    Err(pgpo::Error::Unavailable { backend: "cuda", reason: "built without the `cuda` feature".into() })
}

pub fn devices(which: &str) -> pgpo::Result<Vec<Device>> {
    let want = |b: &str| which == "all" || which == b;
    if !["all", "cpu", "wgpu", "cuda", "cuda-emu"].contains(&which) {
        return Err(pgpo::Error::Unavailable {
            backend: "unknown",
            reason: format!("--backend {which:?}: use all, cpu, wgpu, cuda or cuda-emu"),
        });
    }
    let mut out = Vec::new();
    if want("cpu") {
        out.push(Device::Cpu);
    }
    let gpus: [(&str, fn() -> pgpo::Result<Device>); 3] =
        [("wgpu", Device::wgpu), ("cuda", || Device::cuda(0)), ("cuda-emu", Device::cuda_emu)];
    for (name, dev) in gpus {
        // The emulation is a test build's backend: listed under "all" only when built in.
        if !want(name) || (name == "cuda-emu" && which == "all" && !cfg!(feature = "cuda-emu")) {
            continue;
        }
        match dev() {
            Ok(d) => out.push(d),
            Err(e) if which == name => return Err(e),
            Err(e) => eprintln!("skipping {name}: {e}"),
        }
    }
    Ok(out)
}

pub fn run_checks(which: &str, filter: Option<&str>, max_cases: usize) -> pgpo::Result<bool> {
    let devices = devices(which)?;
    let checks: Vec<_> = check::all().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))).collect();
    let width = devices.iter().map(|d| d.name().len()).max().unwrap_or(4).max(7);
    let kw = checks.iter().map(|c| c.name.len()).max().unwrap_or(6);
    println!("{:<kw$} {:<width$} {:>12} {:>8}  result", "kernel", "backend", "max |err|", "err/tol");
    let mut all_pass = true;
    for c in &checks {
        for d in &devices {
            let row = check::run_cases(c, d, max_cases);
            all_pass &= row.pass;
            println!(
                "{:<kw$} {:<width$} {:>12.3e} {:>8.3}  {}",
                row.kernel,
                row.backend,
                row.max_abs_err,
                row.worst_ratio,
                if row.pass { "pass".to_string() } else { format!("FAIL {}", row.error.unwrap_or_default()) }
            );
        }
    }
    println!("{}", if all_pass { "all kernels pass" } else { "some kernels FAILED" });
    Ok(all_pass)
}
