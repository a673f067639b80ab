//! Bad input gets a clear `Err`, never a panic or a silent wrong answer.

mod common;

use pgpo::ops::{self, Transpose};
use pgpo::{Device, Error, Tensor};

fn t(shape: &[usize], dev: &Device) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::from_vec((0..n).map(|i| i as f32 * 0.5 + 1.0).collect(), shape, dev).unwrap()
}

fn devices() -> Vec<Device> {
    ["cpu", "wgpu", "cuda"].into_iter().filter_map(common::backend).collect()
}

#[test]
fn from_vec_rejects_wrong_length() {
    let e = Tensor::from_vec(vec![1.0; 5], &[2, 3], &Device::Cpu).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn matmul_rejects_mismatched_inner_sizes() {
    for dev in devices() {
        let e = ops::matmul(&t(&[2, 3], &dev), &t(&[4, 5], &dev), Transpose::NN).unwrap_err();
        assert!(e.to_string().contains("inner sizes differ"), "{e}");
    }
}

#[test]
fn matmul_rejects_incompatible_batches() {
    let e = ops::matmul(&t(&[2, 3, 3], &Device::Cpu), &t(&[3, 3, 3], &Device::Cpu), Transpose::NN).unwrap_err();
    assert!(e.to_string().contains("batch sizes"), "{e}");
}

/// An empty batch against a broadcast operand is an empty product, as in torch; it used to
/// come out as one [m, n] matrix read from the empty operand's missing data.
#[test]
fn matmul_of_an_empty_batch_is_empty() {
    let a = Tensor::from_vec(Vec::new(), &[0, 2, 3], &Device::Cpu).unwrap();
    for (x, y) in [(&a, &t(&[3, 4], &Device::Cpu)), (&t(&[4, 2], &Device::Cpu), &Tensor::from_vec(Vec::new(), &[0, 2, 5], &Device::Cpu).unwrap())] {
        let out = ops::matmul(x, y, Transpose::NN).unwrap();
        assert_eq!(out.numel(), 0, "{:?}", out.shape());
        assert_eq!(out.shape()[0], 0, "{:?}", out.shape());
    }
}

#[test]
fn add_rejects_a_non_trailing_operand() {
    for dev in devices() {
        let e = ops::add(&t(&[2, 3], &dev), &t(&[2], &dev)).unwrap_err();
        assert!(matches!(e, Error::Shape { .. }), "{e}");
    }
}

#[test]
fn gather_rejects_an_unknown_token_id() {
    for dev in devices() {
        let e = ops::gather(&t(&[4, 2], &dev), &[0, 3, 4]).unwrap_err();
        assert!(matches!(e, Error::Index { index: 4, size: 4, .. }), "{e}");
    }
}

#[test]
fn scatter_add_rejects_mismatched_ids() {
    let e = ops::scatter_add(&t(&[3, 2], &Device::Cpu), &[0, 1], 4).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn permute_rejects_a_repeated_axis() {
    let e = ops::permute(&t(&[2, 3, 4], &Device::Cpu), &[0, 0, 1]).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn slice_rejects_a_range_past_the_end() {
    let e = ops::slice(&t(&[2, 3], &Device::Cpu), 1, 2, 2).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn concat_rejects_mismatched_shapes() {
    let (a, b) = (t(&[2, 3], &Device::Cpu), t(&[3, 3], &Device::Cpu));
    assert!(ops::concat(&[&a, &b], 0).is_ok());
    let e = ops::concat(&[&a, &b], 1).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }), "{e}");
}

#[test]
fn reductions_reject_an_empty_axis() {
    let x = Tensor::from_vec(vec![], &[3, 0], &Device::Cpu).unwrap();
    assert!(ops::row_sum(&x).is_err());
    assert!(ops::softmax(&x).is_err());
}

#[test]
fn ops_reject_tensors_on_different_devices() {
    let Some(gpu) = common::backend("wgpu") else { return };
    let e = ops::add(&t(&[2, 2], &Device::Cpu), &t(&[2, 2], &gpu)).unwrap_err();
    assert!(matches!(e, Error::DeviceMismatch { .. }), "{e}");
}

#[test]
fn cuda_without_a_driver_is_an_error_not_a_panic() {
    match Device::cuda(0) {
        Ok(d) => println!("a CUDA device is present: {}", d.name()),
        Err(e) => assert!(matches!(e, Error::Unavailable { backend: "cuda", .. }), "{e}"),
    }
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_refuses_a_buffer_over_the_binding_limit_by_name() {
    let Some(dev @ Device::Wgpu(_)) = common::backend("wgpu") else { return };
    let Device::Wgpu(w) = &dev else { unreachable!() };
    let limit = u64::from(w.limits().max_storage_buffer_binding_size);
    if limit > 1 << 28 {
        println!("skipping: binding limit {limit} B is too large to exceed cheaply");
        return;
    }
    let n = (limit / 4 + 1) as usize;
    let e = Tensor::from_vec(vec![1.0; n], &[n], &dev).unwrap_err();
    assert!(e.to_string().contains("max_storage_buffer_binding_size"), "{e}");
}

#[cfg(feature = "wgpu")]
#[test]
fn wgpu_refuses_a_dispatch_over_the_workgroup_limit_by_name() {
    let Some(dev @ Device::Wgpu(_)) = common::backend("wgpu") else { return };
    let Device::Wgpu(w) = &dev else { unreachable!() };
    // A batch of tiny matrices: one workgroup per matrix along z, past the adapter's limit,
    // with buffers far below any size limit.
    let batch = w.limits().max_compute_workgroups_per_dimension as usize + 1;
    let (a, b) = (t(&[batch, 1, 2], &dev), t(&[batch, 2, 1], &dev));
    let e = ops::matmul(&a, &b, Transpose::NN).unwrap_err();
    assert!(e.to_string().contains("max_compute_workgroups_per_dimension") && e.to_string().contains("dispatch"), "{e}");
}

/// A lost wgpu device (here destroyed, as a driver reset would) gives errors on every later
/// operation: uploads, kernels, downloads. The process does not abort.
#[cfg(feature = "wgpu")]
#[test]
fn a_lost_wgpu_device_returns_errors_and_does_not_abort() {
    if common::backend("wgpu").is_none() {
        return;
    }
    // A device of its own: the process-wide one stays usable for the other tests.
    let w = std::sync::Arc::new(pgpo::backend::wgpu::WgpuDevice::new().unwrap());
    let dev = Device::Wgpu(w.clone());
    let a = t(&[33, 17], &dev);
    let b = t(&[17, 9], &dev);
    assert!(ops::matmul(&a, &b, Transpose::NN).unwrap().to_vec().is_ok(), "works before the loss");
    w.destroy();
    let product = ops::matmul(&a, &b, Transpose::NN).and_then(|c| c.to_vec());
    assert!(product.is_err(), "a kernel on a lost device must fail");
    let e = product.unwrap_err().to_string();
    assert!(e.starts_with("wgpu"), "{e}");
    assert!(Tensor::from_vec(vec![1.0; 8], &[8], &dev).and_then(|x| x.to_vec()).is_err(), "an upload and download on a lost device must fail");
}

#[test]
fn half_precision_round_trips_through_f32() {
    let vals = [0.0f32, 1.0, -2.5, 65504.0, 1e-3];
    let h: Vec<half::f16> = vals.iter().map(|&v| half::f16::from_f32(v)).collect();
    let b: Vec<half::bf16> = vals.iter().map(|&v| half::bf16::from_f32(v)).collect();
    for dev in devices() {
        let th = Tensor::from_f16(&h, &[5], &dev).unwrap();
        assert_eq!(th.to_f16_vec().unwrap(), h);
        let tb = Tensor::from_bf16(&b, &[5], &dev).unwrap();
        assert_eq!(tb.to_bf16_vec().unwrap(), b);
    }
}

#[test]
fn device_parse_rejects_an_unknown_backend() {
    assert!(Device::parse("metal2").is_err());
    assert!(matches!(Device::parse("cpu"), Ok(Device::Cpu)));
}

/// The error names the option and says what it must be; no panic on the way.
fn assert_option_error<T>(r: pgpo::Result<T>, option: &str) {
    match r {
        Err(e @ Error::Option { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("option {option} ")) && msg.contains("must be"), "{msg}");
        }
        Err(e) => panic!("expected an error naming option {option}, got {e}"),
        Ok(_) => panic!("expected an error naming option {option}, got Ok"),
    }
}

#[test]
fn kl_dual_rejects_bad_temperature_and_d_clamp() {
    use pgpo::ops::KlOptions;
    let (a, b) = (t(&[2, 5], &Device::Cpu), t(&[2, 5], &Device::Cpu));
    for (temperature, d_clamp, name) in [(0.0, 20.0, "temperature"), (f32::NAN, 20.0, "temperature"), (1.0, -1.0, "d_clamp"), (1.0, f32::NAN, "d_clamp")] {
        assert_option_error(ops::kl_dual(&a, &b, &[0, 1], KlOptions { temperature, d_clamp }), name);
    }
}

#[test]
fn policy_loss_rejects_each_bad_option() {
    use pgpo::ops::{LossConfig, TokenInputs};
    let logits = t(&[2, 3], &Device::Cpu);
    let x = TokenInputs { tokens: &[0, 1], old_logp: &[-1.0; 2], adv: &[1.0; 2], weight: &[0.5; 2], ref_logp: Some(&[-1.0; 2]) };
    let d = LossConfig::default();
    let cases = [
        (LossConfig { temperature: 0.0, ..d }, "temperature"),
        (LossConfig { temperature: f32::INFINITY, ..d }, "temperature"),
        (LossConfig { clip_low: f32::NAN, ..d }, "clip_low"),
        (LossConfig { clip_low: 1.0, ..d }, "clip_low"),
        (LossConfig { clip_high: -0.1, ..d }, "clip_high"),
        (LossConfig { dual_clip: 0.5, ..d }, "dual_clip"),
        (LossConfig { dual_clip: f32::NAN, ..d }, "dual_clip"),
        (LossConfig { kl_coef: -1.0, ..d }, "kl_coef"),
        (LossConfig { kl_coef: f32::NAN, ..d }, "kl_coef"),
    ];
    for (c, name) in cases {
        assert_option_error(ops::policy_loss(&logits, &x, &c), name);
    }
}

#[test]
fn pgpo_weights_and_token_advantages_reject_each_bad_option() {
    use pgpo::ops::WeightConfig;
    let (s, m) = (t(&[2, 3], &Device::Cpu), Tensor::from_vec(vec![1.0; 6], &[2, 3], &Device::Cpu).unwrap());
    let d = WeightConfig::default();
    let cases = [
        (WeightConfig { tau: 1.5, ..d }, "tau"),
        (WeightConfig { tau: f32::NAN, ..d }, "tau"),
        (WeightConfig { beta: -1.0, ..d }, "beta"),
        (WeightConfig { eps: 0.0, ..d }, "eps"),
        (WeightConfig { floor: f32::NAN, ..d }, "floor"),
    ];
    for (c, name) in cases {
        assert_option_error(ops::pgpo_weights(&s, &m, &c), name);
        let adv = pgpo::rl::advantages::token_advantages(&[1.0, 0.0], &[0, 0], &[-1.0; 6], &[-1.5; 6], &[1.0; 6], 3, &c, 20.0);
        assert_option_error(adv, name);
    }
    for d_clamp in [f32::NAN, -1.0, 0.0] {
        let adv = pgpo::rl::advantages::token_advantages(&[1.0, 0.0], &[0, 0], &[-1.0; 6], &[-1.5; 6], &[1.0; 6], 3, &d, d_clamp);
        assert_option_error(adv, "d_clamp");
    }
}

#[test]
fn adamw_rms_norm_and_attention_reject_bad_options() {
    use pgpo::ops::{AdamWStep, AttnOptions};
    use pgpo::train::optimizer::{AdamW, AdamWConfig};
    let p = t(&[4], &Device::Cpu);
    let s = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, bias1: 0.1, bias2: 0.001, grad_scale: 1.0 };
    let cases = [
        (AdamWStep { lr: f32::NAN, ..s }, "lr"),
        (AdamWStep { lr: -1.0, ..s }, "lr"),
        (AdamWStep { beta1: 1.0, ..s }, "beta1"),
        (AdamWStep { beta2: -0.1, ..s }, "beta2"),
        (AdamWStep { eps: 0.0, ..s }, "eps"),
        (AdamWStep { weight_decay: f32::NAN, ..s }, "weight_decay"),
        (AdamWStep { bias1: 0.0, ..s }, "bias1"),
        (AdamWStep { bias2: f32::NAN, ..s }, "bias2"),
        (AdamWStep { grad_scale: f32::INFINITY, ..s }, "grad_scale"),
    ];
    for (step, name) in cases {
        assert_option_error(ops::adamw(&p, &p, &p, &p, step), name);
    }
    let c = AdamWConfig::default();
    for (config, name) in [
        (AdamWConfig { lr: f32::NAN, ..c }, "lr"),
        (AdamWConfig { beta1: 1.5, ..c }, "beta1"),
        (AdamWConfig { beta2: f32::NAN, ..c }, "beta2"),
        (AdamWConfig { eps: -1e-8, ..c }, "eps"),
        (AdamWConfig { weight_decay: -0.1, ..c }, "weight_decay"),
        (AdamWConfig { max_grad_norm: Some(0.0), ..c }, "max_grad_norm"),
    ] {
        assert_option_error(AdamW::new(std::slice::from_ref(&p), config), name);
    }
    let x = t(&[2, 4], &Device::Cpu);
    for eps in [f32::NAN, -1.0] {
        assert_option_error(ops::rms_norm(&x, &p, eps), "eps");
    }
    let q = t(&[1, 1, 3, 4], &Device::Cpu);
    assert_option_error(ops::attention(&q, &q, &q, &AttnOptions { scale: Some(f32::NAN), ..Default::default() }), "scale");
}

#[test]
fn clis_reject_bad_options_naming_them() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = std::env::temp_dir().join(format!("pgpo-never-{}.safetensors", std::process::id()));
    let run = |args: &[&str]| std::process::Command::new(env!("CARGO_BIN_EXE_pgpo")).args(args).output().unwrap();
    let adv_in = fixtures.join("adv_in.safetensors");
    let policy_in = fixtures.join("policy_in.safetensors");
    let cases: [(&[&str], &str); 6] = [
        (&["advantages", "--tau", "1.5"], "tau"),
        (&["advantages", "--beta", "NaN"], "beta"),
        (&["advantages", "--d-clamp=-3"], "d_clamp"),
        (&["policy-loss", "--clip-low", "NaN"], "clip_low"),
        (&["policy-loss", "--dual-clip", "0.5"], "dual_clip"),
        (&["policy-loss", "--temperature", "0"], "temperature"),
    ];
    for (args, name) in cases {
        let input = if args[0] == "advantages" { &adv_in } else { &policy_in };
        let mut all = vec![args[0], "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
        all.extend(&args[1..]);
        let r = run(&all);
        let msg = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{all:?} succeeded");
        assert!(msg.contains(&format!("option {name} ")), "{all:?}: {msg}");
        assert!(!msg.contains("panicked"), "{all:?}: {msg}");
        assert!(!out.exists(), "no output file is written on failure");
    }
}
