//! Adapter choice from the environment. A separate test binary, because it sets variables.

#![cfg(feature = "wgpu")]

mod common;

use pgpo::backend::wgpu::adapter;

#[test]
fn empty_or_named_wgpu_backend_still_finds_the_adapter_and_bogus_is_an_error() {
    let baseline = adapter::enumerate().unwrap().len();
    if baseline == 0 {
        common::skip("wgpu", "no wgpu adapter on this machine");
        return;
    }
    // SAFETY: this binary's only test; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("WGPU_BACKEND", "") };
    assert!(!adapter::enumerate().unwrap().is_empty(), "an empty WGPU_BACKEND must not mean no API");
    unsafe { std::env::set_var("WGPU_BACKEND", "  ") };
    assert!(!adapter::enumerate().unwrap().is_empty());
    unsafe { std::env::set_var("WGPU_BACKEND", "nonsense") };
    let e = adapter::enumerate().unwrap_err();
    assert!(e.to_string().contains("WGPU_BACKEND"), "{e}");
    unsafe { std::env::set_var("WGPU_BACKEND", "") };
    unsafe { std::env::set_var("PGPO_WGPU_ADAPTER", "no-such-adapter-xyz") };
    let e = adapter::choose().unwrap_err();
    assert!(e.to_string().contains("PGPO_WGPU_ADAPTER"), "{e}");
    unsafe { std::env::remove_var("PGPO_WGPU_ADAPTER") };
    unsafe { std::env::remove_var("WGPU_BACKEND") };
}
