//! The pgpo command line: `info`, `check`.

#[path = "pgpo/rl_cmds.rs"]
mod rl_cmds;

use clap::{Parser, Subcommand};
use pgpo::check;
use pgpo::Device;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "pgpo", version, about = "Hand-written GPU kernels and perception-grounded RL training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Backends, adapters, limits and features of this machine.
    Info,
    /// Every kernel on every backend present, against the CPU (and the CPU against f64 loops).
    Check {
        /// Backends to check: all, cpu, wgpu or cuda.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Only kernels whose name contains this text.
        #[arg(long)]
        kernel: Option<String>,
        /// Compile every CUDA kernel with NVRTC (no driver needed) instead of running kernels.
        #[arg(long)]
        compile_only: bool,
        /// With --compile-only: write each PTX file here, as <family>.<arch>.ptx.
        #[arg(long)]
        ptx_dir: Option<std::path::PathBuf>,
    },
    /// GRPO advantages, token visual dependency (k3), PGPO weights and token advantages.
    /// IN holds rewards F32[B], group I64[B], logp_clean, logp_blind and mask F32[B, L];
    /// OUT gets adv [B], tvd, weights and token_adv [B, L].
    Advantages {
        #[arg(long = "in")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        #[arg(long, default_value_t = 0.4)]
        tau: f32,
        #[arg(long, default_value_t = 2.0)]
        beta: f32,
        /// paper, quantile, floor or no-norm.
        #[arg(long, default_value = "paper")]
        variant: String,
        /// Clamp of d = logp_blind - logp_clean in k3.
        #[arg(long, default_value_t = 20.0)]
        d_clamp: f32,
    },
    /// The clipped policy loss and its gradient with respect to the logits.
    /// IN holds logits F32[N, V], tokens I64[N], old_logp and adv F32[N], optionally mask
    /// F32[N] and seq I64[N]; OUT gets loss F32[1] and dlogits F32[N, V].
    PolicyLoss {
        #[arg(long = "in")]
        input: std::path::PathBuf,
        #[arg(long = "out")]
        output: std::path::PathBuf,
        #[arg(long, default_value_t = 0.2)]
        clip_low: f32,
        #[arg(long, default_value_t = 0.28)]
        clip_high: f32,
        /// Dual-clip constant for negative advantages; 0 turns it off.
        #[arg(long, default_value_t = 3.0)]
        dual_clip: f32,
        /// token-mean, seq-mean-token-mean or seq-mean-token-sum.
        #[arg(long, default_value = "token-mean")]
        agg: String,
        #[arg(long, default_value_t = 1.0)]
        temperature: f32,
        /// cpu, wgpu, cuda or auto.
        #[arg(long, default_value = "cpu")]
        backend: String,
    },
    /// Time every kernel on every backend present: median ms, GFLOP/s or GB/s, % of peak.
    Bench {
        /// Backends to time: all, cpu, wgpu or cuda.
        #[arg(long, default_value = "all")]
        backend: String,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Smaller shapes and fewer repetitions (about two minutes on a 2-core CPU machine).
        #[arg(long)]
        quick: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info => info(),
        Command::Check { backend, kernel, compile_only: true, ptx_dir } => {
            let _ = (backend, kernel);
            compile_only(ptx_dir.as_deref())
        }
        Command::Check { backend, kernel, .. } => run_checks(&backend, kernel.as_deref()),
        Command::Bench { backend, json, quick } => bench(&backend, json, quick),
        Command::Advantages { input, output, tau, beta, variant, d_clamp } => rl_cmds::advantages(&rl_cmds::AdvantageArgs {
            input: &input,
            output: &output,
            tau,
            beta,
            variant: &variant,
            d_clamp,
        })
        .map(|()| {
            println!("wrote {}", output.display());
            true
        }),
        Command::PolicyLoss { input, output, clip_low, clip_high, dual_clip, agg, temperature, backend } => Device::parse(&backend)
            .and_then(|device| {
                let config = pgpo::ops::LossConfig { clip_low, clip_high, dual_clip, kl_coef: 0.0, temperature };
                rl_cmds::policy_loss(&rl_cmds::PolicyLossArgs { input: &input, output: &output, config, agg: &agg, device })
            })
            .map(|(loss, out)| {
                println!(
                    "loss {loss:.6}  clip_frac {:.4}  approx_kl {:.6}  entropy {:.4}  wrote {}",
                    out.clip_frac,
                    out.approx_kl,
                    out.entropy,
                    output.display()
                );
                true
            }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info() -> pgpo::Result<bool> {
    println!("cpu: available, {} rayon threads", rayon::current_num_threads());
    wgpu_info();
    cuda_info();
    println!("auto: {}", Device::auto().name());
    Ok(true)
}

#[cfg(feature = "wgpu")]
fn wgpu_info() {
    use pgpo::backend::wgpu::adapter;
    let adapters = adapter::enumerate();
    match adapters {
        Ok(list) if !list.is_empty() => {
            println!("wgpu: {} adapter(s)", list.len());
            for a in &list {
                let i = a.get_info();
                println!(
                    "  - {} [{:?}, {:?}] driver: {} {}",
                    i.name, i.device_type, i.backend, i.driver, i.driver_info
                );
            }
        }
        Ok(_) => println!("wgpu: no adapter found (install mesa-vulkan-drivers for a software Vulkan device)"),
        Err(e) => println!("wgpu: {e}"),
    }
    match Device::wgpu() {
        Ok(Device::Wgpu(d)) => {
            let l = d.limits();
            println!("  chosen: {} ({})", d.adapter_name(), if d.is_hardware() { "GPU" } else { "software" });
            println!("  limits: max_storage_buffer_binding_size {} B, max_buffer_size {} B", l.max_storage_buffer_binding_size, l.max_buffer_size);
            println!(
                "          max_compute_workgroup_storage_size {} B, max_compute_invocations_per_workgroup {}, max_compute_workgroups_per_dimension {}",
                l.max_compute_workgroup_storage_size, l.max_compute_invocations_per_workgroup, l.max_compute_workgroups_per_dimension
            );
            let f = d.features();
            let i = d.info();
            println!(
                "  features: shader_f16 {}, subgroup {} (sizes {}..{}), timestamp_query {}",
                f.contains(wgpu::Features::SHADER_F16),
                f.contains(wgpu::Features::SUBGROUP),
                i.subgroup_min_size,
                i.subgroup_max_size,
                f.contains(wgpu::Features::TIMESTAMP_QUERY)
            );
        }
        Ok(_) => {}
        Err(e) => println!("  chosen: none ({e})"),
    }
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_info() {
    println!("wgpu: unavailable: built without the `wgpu` feature");
}

#[cfg(feature = "cuda")]
fn cuda_info() {
    match pgpo::backend::cuda::compile::nvrtc_missing() {
        None => println!("nvrtc: available (CUDA kernels can be compiled)"),
        Some(why) => println!("nvrtc: unavailable: {why}"),
    }
    match Device::cuda(0) {
        Ok(d) => println!("cuda: available, {}", d.name()),
        Err(e) => println!("cuda: {e}"),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda_info() {
    println!("cuda: unavailable: built without the `cuda` feature");
}

#[cfg(feature = "cuda")]
fn compile_only(ptx_dir: Option<&std::path::Path>) -> pgpo::Result<bool> {
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
fn compile_only(_: Option<&std::path::Path>) -> pgpo::Result<bool> {
    Err(pgpo::Error::Unavailable { backend: "cuda", reason: "built without the `cuda` feature".into() })
}

fn devices(which: &str) -> pgpo::Result<Vec<Device>> {
    let want = |b: &str| which == "all" || which == b;
    if !["all", "cpu", "wgpu", "cuda"].contains(&which) {
        return Err(pgpo::Error::Unavailable { backend: "unknown", reason: format!("--backend {which:?}: use all, cpu, wgpu or cuda") });
    }
    let mut out = Vec::new();
    if want("cpu") {
        out.push(Device::Cpu);
    }
    for (name, dev) in [("wgpu", Device::wgpu as fn() -> pgpo::Result<Device>), ("cuda", || Device::cuda(0))] {
        if !want(name) {
            continue;
        }
        match dev() {
            Ok(d) => out.push(d),
            Err(e) if which == name => return Err(e),
            Err(e) => println!("skipping {name}: {e}"),
        }
    }
    Ok(out)
}

fn run_checks(which: &str, filter: Option<&str>) -> pgpo::Result<bool> {
    let devices = devices(which)?;
    let checks: Vec<_> = check::all().into_iter().filter(|c| filter.is_none_or(|f| c.name.contains(f))).collect();
    let width = devices.iter().map(|d| d.name().len()).max().unwrap_or(4).max(7);
    let kw = checks.iter().map(|c| c.name.len()).max().unwrap_or(6);
    println!("{:<kw$} {:<width$} {:>12} {:>8}  result", "kernel", "backend", "max |err|", "err/tol");
    let mut all_pass = true;
    for c in &checks {
        for d in &devices {
            let row = check::run(c, d);
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

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn bench(which: &str, json: bool, quick: bool) -> pgpo::Result<bool> {
    let devices = devices(which)?;
    let mut all = Vec::new();
    if !json {
        println!("{:<22} {:<10} {:<26} {:>10} {:>10} {:>10} {:>7}", "kernel", "backend", "shape", "ms", "GFLOP/s", "GB/s", "% peak");
    }
    for d in &devices {
        for r in pgpo::bench::run(d, quick)? {
            if !json {
                let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
                println!(
                    "{:<22} {:<10} {:<26} {:>10.3} {:>10} {:>10} {:>7}",
                    r.kernel,
                    d.kind(),
                    r.shape,
                    r.ms,
                    opt(r.gflops),
                    opt(r.gbps),
                    opt(r.pct_peak)
                );
            }
            all.push(r);
        }
    }
    if json {
        let items: Vec<String> = all
            .iter()
            .map(|r| {
                let mut f = vec![
                    format!("\"kernel\":{}", json_str(r.kernel)),
                    format!("\"backend\":{}", json_str(&r.backend)),
                    format!("\"shape\":{}", json_str(&r.shape)),
                    format!("\"ms\":{:.6}", r.ms),
                ];
                f.extend(r.gflops.map(|g| format!("\"gflops\":{g:.3}")));
                f.extend(r.gbps.map(|g| format!("\"gbps\":{g:.3}")));
                f.extend(r.pct_peak.map(|p| format!("\"pct_peak\":{p:.2}")));
                format!("{{{}}}", f.join(","))
            })
            .collect();
        println!("[{}]", items.join(",\n "));
    }
    Ok(true)
}
