//! `pgpo bench`: each kernel's median time at a fixed shape, its throughput (GFLOP/s for
//! compute-bound kernels, GB/s of compulsory traffic for memory-bound ones) and the share of
//! the backend's measured peak: the faster of a large copy and a large read gives the
//! bandwidth, the best matmul the FLOP rate. The criterion benches (benches/kernels.rs) run the same cases.

pub mod model;
pub mod rl;
pub mod step_3b;

use crate::device::Device;
use crate::error::Result;
use crate::ops::{self, AttnOptions, Transpose};
use crate::rng::Rng;
use crate::tensor::Tensor;
use std::time::Instant;

/// What a case's throughput counts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Work {
    Flops(f64),
    Bytes(f64),
    /// Tokens processed (model rows): reported as tokens/s.
    Tokens(f64),
}

/// A prepared workload: inputs live on the device; `run` launches the kernels once.
pub struct Case {
    pub kernel: &'static str,
    pub shape: String,
    pub work: Work,
    pub run: Box<dyn FnMut() -> Result<()>>,
}

#[derive(Clone, Debug)]
#[derive(Default)]
pub struct Row {
    pub kernel: &'static str,
    pub backend: String,
    pub shape: String,
    pub ms: f64,
    pub gflops: Option<f64>,
    pub gbps: Option<f64>,
    pub tokens_per_s: Option<f64>,
    /// Percent of the backend's measured peak (bandwidth or FLOP rate).
    pub pct_peak: Option<f64>,
    /// The most bytes the row's own tensors held at once (its inputs, made before, excluded).
    pub peak_bytes: Option<u64>,
    /// The process's peak resident memory over the row (the 3B step).
    pub peak_rss_bytes: Option<u64>,
    /// The trainer's memory estimate for the same work.
    pub estimate_bytes: Option<u64>,
    /// Host-device traffic of one run of the row (the RL step's phases on a GPU backend).
    pub transfers: Option<crate::backend::transfers::Transfers>,
}

fn rand(dev: &Device, shape: &[usize], seed: u64) -> Result<Tensor> {
    Tensor::from_vec(Rng::new(seed).vec(shape.iter().product(), -1.0, 1.0), shape, dev)
}

/// Sizes: full, quick, and for software adapters (lavapipe), where full sizes take minutes.
pub fn size(dev: &Device, quick: bool, full: usize, small: usize, tiny: usize) -> usize {
    if software(dev) { tiny } else if quick { small } else { full }
}

/// A software adapter (lavapipe), where full-size work takes minutes.
pub fn software(dev: &Device) -> bool {
    match dev {
        #[cfg(feature = "wgpu")]
        Device::Wgpu(w) => !w.is_hardware(),
        _ => false,
    }
}

/// Runs the kernel once, waiting for the device.
fn sync(dev: &Device, f: impl Fn() -> Result<Tensor>) -> Result<()> {
    let t = f()?;
    dev.synchronize()?;
    drop(t);
    Ok(())
}

/// The kernel rows whose name `want` accepts; the inputs (gigabytes at full size) are built
/// only for those.
pub fn cases(dev: &Device, quick: bool, want: &dyn Fn(&str) -> bool) -> Result<Vec<Case>> {
    let mut out = Vec::new();
    let d = dev.clone();

    if want("copy (scale)") {
        let n = size(dev, quick, 1 << 25, 1 << 24, 1 << 22);
        let x = rand(dev, &[n], 1)?;
        out.push(Case {
            kernel: "copy (scale)",
            shape: format!("[{n}]"),
            work: Work::Bytes(8.0 * n as f64),
            run: Box::new({
                let d = d.clone();
                move || sync(&d, || ops::scale(&x, 1.0))
            }),
        });
    }

    if want("read (row_sum)") {
        // A large read: the bandwidth the row kernels (kl_dual, policy_loss) can reach.
        let rows = size(dev, quick, 1 << 15, 1 << 14, 1 << 12);
        let x = rand(dev, &[rows, 1024], 14)?;
        out.push(Case {
            kernel: "read (row_sum)",
            shape: format!("[{rows}, 1024]"),
            work: Work::Bytes(4.0 * (rows * 1024) as f64),
            run: Box::new({
                let d = d.clone();
                move || sync(&d, || ops::row_sum(&x))
            }),
        });
    }

    if want("matmul") {
        for full in [1024usize, 2048] {
            let m = size(dev, quick, full, full / 2, full / 4);
            let (a, b) = (rand(dev, &[m, m], 2)?, rand(dev, &[m, m], 3)?);
            out.push(Case {
                kernel: "matmul",
                shape: format!("{m}x{m}x{m}"),
                work: Work::Flops(2.0 * (m * m * m) as f64),
                run: Box::new({
                    let d = d.clone();
                    move || sync(&d, || ops::matmul(&a, &b, Transpose::NN))
                }),
            });
        }
        // A weight in its stored bf16, as x · Wᵀ reads it: a prefill's rows and a decode
        // step's 8, against the same products from f32 (the rows above and below).
        let m = size(dev, quick, 2048, 1024, 512);
        let w32 = rand(dev, &[m, m], 6)?;
        let w16 = w32.to_dtype(crate::tensor::Dtype::BF16)?;
        for rows in [m, 8] {
            let x = rand(dev, &[rows, m], 7)?;
            for (w, what) in [(w32.clone(), "f32"), (w16.clone(), "bf16")] {
                let (d, x) = (d.clone(), x.clone());
                out.push(Case {
                    kernel: "matmul",
                    shape: format!("{rows}x{m} · ({m}x{m} {what})ᵀ"),
                    work: Work::Flops(2.0 * (rows * m * m) as f64),
                    run: Box::new(move || sync(&d, || ops::matmul(&x, &w, Transpose::NT))),
                });
            }
        }
    }

    if want("softmax") || want("rms_norm") {
        let (rows, cols) = (size(dev, quick, 4096, 2048, 512), 4096);
        let x = rand(dev, &[rows, cols], 4)?;
        let w = rand(dev, &[cols], 5)?;
        let bytes = 8.0 * (rows * cols) as f64;
        out.push(Case {
            kernel: "softmax",
            shape: format!("[{rows}, {cols}]"),
            work: Work::Bytes(bytes),
            run: Box::new({
                let (d, x) = (d.clone(), x.clone());
                move || sync(&d, || ops::softmax(&x))
            }),
        });
        out.push(Case {
            kernel: "rms_norm",
            shape: format!("[{rows}, {cols}]"),
            work: Work::Bytes(bytes),
            run: Box::new({
                let d = d.clone();
                move || sync(&d, || Ok(ops::rms_norm(&x, &w, 1e-6)?.0))
            }),
        });
    }

    if want("cross_entropy fwd+bwd") {
        let (nr, v) = (size(dev, quick, 1024, 256, 32), 151_936);
        let logits = rand(dev, &[nr, v], 6)?;
        let targets: Vec<u32> = (0..nr).map(|i| (i * 7919 % v) as u32).collect();
        let dloss = Tensor::full(1.0, &[1], dev)?;
        out.push(Case {
            kernel: "cross_entropy fwd+bwd",
            shape: format!("[{nr}, {v}]"),
            // Read the logits twice (forward, backward), write the gradient once.
            work: Work::Bytes(12.0 * (nr * v) as f64),
            run: Box::new({
                let d = d.clone();
                move || {
                    sync(&d, || {
                        let (_, lse) = ops::cross_entropy(&logits, &targets)?;
                        ops::cross_entropy_backward(&logits, &targets, &lse, &dloss, 1.0 / nr as f32)
                    })
                }
            }),
        });
    }

    // The PGPO kernels at the Qwen2.5 vocabulary.
    let (nk, vq) = (size(dev, quick, 4096, 512, 32), 151_936);
    let toks: Vec<u32> = (0..nk).map(|i| (i * 7919 % vq) as u32).collect();
    if want("kl_dual") {
        let clean = rand(dev, &[nk, vq], 11)?;
        let blind = rand(dev, &[nk, vq], 12)?;
        out.push(Case {
            kernel: "kl_dual",
            shape: format!("[{nk}, {vq}]"),
            // Both logit rows are read once.
            work: Work::Bytes(8.0 * (nk * vq) as f64),
            run: Box::new({
                let (d, toks) = (d.clone(), toks.clone());
                move || {
                    let o = ops::kl_dual(&clean, &blind, &toks, ops::KlOptions::default())?;
                    d.synchronize()?;
                    drop(o);
                    Ok(())
                }
            }),
        });
    }

    if want("policy_loss fwd+bwd") {
        let old = vec![-12.0f32; nk];
        let adv: Vec<f32> = (0..nk).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let weight = vec![1.0 / nk as f32; nk];
        let plogits = rand(dev, &[nk, vq], 13)?;
        out.push(Case {
            kernel: "policy_loss fwd+bwd",
            shape: format!("[{nk}, {vq}]"),
            // Compulsory traffic: logits read once, dlogits written once (each row is re-read
            // from cache on the CPU; GPUs read it twice, so their figure is a lower bound).
            work: Work::Bytes(8.0 * (nk * vq) as f64),
            run: Box::new({
                let d = d.clone();
                move || {
                    let x = ops::TokenInputs { tokens: &toks, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
                    let o = ops::policy_loss(&plogits, &x, &ops::LossConfig::default())?;
                    d.synchronize()?;
                    drop(o);
                    Ok(())
                }
            }),
        });
    }

    if want("policy_loss_linear fwd+bwd") || want("policy_loss unfused fwd+bwd") {
        // The LM head and the loss of one mini-batch at Qwen2.5-VL-3B's width and vocabulary:
        // N = 16,384 on a GPU (the shape), 2,048 on the CPU (PyTorch eager needs
        // about 5 GB there, and several times 10 GB at 16,384).
        let nh = if matches!(dev, Device::Cpu) { if quick { 256 } else { 2048 } } else { size(dev, quick, 16_384, 4096, 64) };
        let (hd, v) = if software(dev) { (256, 8192) } else { (2048, 151_936) };
        let hidden = rand(dev, &[nh, hd], 15)?;
        let head = Tensor::from_vec(Rng::new(16).vec(v * hd, -0.02, 0.02), &[v, hd], dev)?;
        let toks: Vec<u32> = (0..nh).map(|i| (i * 7919 % v) as u32).collect();
        let old = vec![-(v as f32).ln(); nh];
        let adv: Vec<f32> = (0..nh).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let weight = vec![1.0 / nh as f32; nh];
        // h · Wᵀ, then dh = dlogits · W and dW = dlogitsᵀ · h.
        let flops = 6.0 * (nh * hd * v) as f64;
        let shape = format!("N{nh} H{hd} V{v}");
        let grads = ops::LinearGrads { hidden: true, head: true };
        for fused in [true, false] {
            let (hidden, head, toks, old, adv, weight, d) = (hidden.clone(), head.clone(), toks.clone(), old.clone(), adv.clone(), weight.clone(), d.clone());
            out.push(Case {
                kernel: if fused { "policy_loss_linear fwd+bwd" } else { "policy_loss unfused fwd+bwd" },
                shape: shape.clone(),
                work: Work::Flops(flops),
                run: Box::new(move || {
                    let x = ops::TokenInputs { tokens: &toks, old_logp: &old, adv: &adv, weight: &weight, ref_logp: None };
                    let c = ops::LossConfig::default();
                    if fused {
                        let o = ops::policy_loss_linear(&hidden, &head, &x, &c, grads, ops::Chunking::Auto)?;
                        d.synchronize()?;
                        drop(o);
                    } else {
                        // What a framework without the fused op runs: the whole [N, V] logits
                        // and their gradient.
                        let logits = ops::matmul(&hidden, &head, Transpose::NT)?;
                        let o = ops::policy_loss(&logits, &x, &c)?;
                        drop(logits);
                        let dh = ops::matmul(&o.dlogits, &head, Transpose::NN)?;
                        let dw = ops::matmul(&o.dlogits, &hidden, Transpose::TN)?;
                        d.synchronize()?;
                        drop((o, dh, dw));
                    }
                    Ok(())
                }),
            });
        }
    }

    if want("attention fwd") || want("attention fwd+bwd") {
        let (h, t, hd) = (16, size(dev, quick, 2048, 1024, 256), 128);
        let q = rand(dev, &[1, h, t, hd], 7)?;
        let k = rand(dev, &[1, h, t, hd], 8)?;
        let vv = rand(dev, &[1, h, t, hd], 9)?;
        let causal = AttnOptions { causal: true, ..Default::default() };
        // Causal: half of the 2 T^2 D multiply-adds of QK^T and PV.
        let fwd_flops = 2.0 * (h * t * t * hd) as f64;
        let shape = format!("B1 H{h} T{t} D{hd} causal");
        out.push(Case {
            kernel: "attention fwd",
            shape: shape.clone(),
            work: Work::Flops(fwd_flops),
            run: Box::new({
                let (d, q, k, vv, o) = (d.clone(), q.clone(), k.clone(), vv.clone(), causal.clone());
                move || sync(&d, || Ok(ops::attention(&q, &k, &vv, &o)?.0))
            }),
        });
        let dout = rand(dev, &[1, h, t, hd], 10)?;
        out.push(Case {
            kernel: "attention fwd+bwd",
            shape,
            // The backward recomputes QK^T twice and does four more products: 3.5x the forward.
            work: Work::Flops(fwd_flops * 3.5),
            run: Box::new(move || {
                sync(&d, || {
                    let (o, lse) = ops::attention(&q, &k, &vv, &causal)?;
                    Ok(ops::attention_backward(&q, &k, &vv, &o, &lse, &dout, &causal)?.0)
                })
            }),
        });
    }

    Ok(out)
}

/// Median wall time of `run` in milliseconds, after one warm-up run.
pub fn time(run: &mut dyn FnMut() -> Result<()>, quick: bool) -> Result<f64> {
    run()?;
    let (budget, max_iters) = if quick { (0.3, 5) } else { (1.0, 20) };
    let start = Instant::now();
    let mut times = Vec::new();
    while times.len() < 3 || (times.len() < max_iters && start.elapsed().as_secs_f64() < budget) {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Times every case on `dev` whose name contains `filter` (the kernels, then the model) and
/// fills in the share of the measured peaks.
pub fn run(dev: &Device, quick: bool, filter: Option<&str>) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let wanted = |c: &Case| filter.is_none_or(|f| c.kernel.contains(f));
    // Model weights are only built when a model row is wanted.
    let models = if filter.is_none_or(|f| ["model fwd+bwd", "model generate"].iter().any(|k| k.contains(f))) { model::cases(dev)? } else { Vec::new() };
    // Likewise each kernel's inputs (gigabytes at full size).
    let kernels = cases(dev, quick, &|k: &str| filter.is_none_or(|f| k.contains(f)))?;
    let all = kernels.into_iter().filter(wanted).chain(models.into_iter().filter(wanted));
    for mut c in all {
        let base = crate::tensor::memory::reset_peak();
        let ms = time(&mut c.run, quick)?;
        let peak_bytes = Some((crate::tensor::memory::peak() - base) as u64);
        let (mut gflops, mut gbps, mut tokens_per_s) = (None, None, None);
        match c.work {
            Work::Flops(f) => gflops = Some(f / ms / 1e6),
            Work::Bytes(b) => gbps = Some(b / ms / 1e6),
            Work::Tokens(t) => tokens_per_s = Some(t / ms * 1e3),
        }
        rows.push(Row { kernel: c.kernel, backend: dev.name(), shape: c.shape, ms, gflops, gbps, tokens_per_s, peak_bytes, ..Default::default() });
    }
    // The RL step: asked for by name, or in a full run on any but a software adapter (where
    // one step takes minutes).
    if filter.is_some_and(|f| "rl step".contains(f) || f.starts_with("rl step")) || (filter.is_none() && !software(dev)) {
        rows.extend(rl::rows(dev, quick)?.into_iter().filter(|r| filter.is_none_or(|f| r.kernel.contains(f) || "rl step".contains(f))));
    }
    // One PGPO step at Qwen2.5-VL-3B's shapes: asked for by name only (minutes, 10+ GB).
    if filter.is_some_and(|f| f.starts_with("3b step")) {
        rows.extend(step_3b::rows(dev, quick)?);
    }
    let peak_bw = rows
        .iter()
        .filter(|r| r.kernel.starts_with("copy") || r.kernel.starts_with("read"))
        .filter_map(|r| r.gbps)
        .fold(0.0, f64::max);
    let peak_fl = rows.iter().filter(|r| r.kernel == "matmul").filter_map(|r| r.gflops).fold(0.0, f64::max);
    for r in &mut rows {
        r.pct_peak = match (r.gflops, r.gbps) {
            (Some(g), _) if peak_fl > 0.0 => Some(100.0 * g / peak_fl),
            (_, Some(b)) if peak_bw > 0.0 => Some(100.0 * b / peak_bw),
            _ => None,
        };
    }
    Ok(rows)
}
