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
