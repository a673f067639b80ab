//! Clean output: on a machine whose only Vulkan driver is lavapipe, no pgpo command prints
//! driver noise to the user as if it were pgpo's error.

#![cfg(feature = "wgpu")]

mod common;

use pgpo::backend::wgpu::adapter;

/// With no XDG_RUNTIME_DIR, or a bad one, no pgpo command passes on the Vulkan loader's
/// "XDG_RUNTIME_DIR is invalid" complaint (Mesa's Wayland layer, even under lavapipe).
#[test]
fn no_command_prints_driver_noise_about_xdg_runtime_dir() {
    if adapter::enumerate().map_or(true, |a| a.is_empty()) {
        common::skip("wgpu", "no wgpu adapter on this machine");
        return;
    }
    for xdg in [None, Some("/nonexistent/xdg"), Some("/tmp")] {
        for args in [&["info"][..], &["check", "--backend", "wgpu", "--kernel", "softmax", "--max-cases", "1"][..]] {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pgpo"));
            c.args(args);
            match xdg {
                None => c.env_remove("XDG_RUNTIME_DIR"),
                Some(v) => c.env("XDG_RUNTIME_DIR", v),
            };
            let o = c.output().unwrap();
            let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
            assert!(o.status.success(), "{args:?}: {all}");
            assert!(!all.contains("XDG_RUNTIME_DIR"), "{args:?} with XDG_RUNTIME_DIR={xdg:?}:\n{all}");
        }
    }
}
