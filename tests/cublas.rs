//! cuBLAS is loaded like the driver: probed first, never called where it is absent.
//!
//! Mistake this catches: calling into cudarc's cuBLAS without the probe (cudarc panics when a
//! dynamically loaded library is missing): `blas_missing` would panic here instead of
//! answering, and `pgpo info` would die. Where cuBLAS is present (a GPU machine), the
//! `matmul*` checks run the cuBLAS path and `matmul*_nvrtc` pgpo's own kernel, both against
//! the CPU (tests/kernels.rs).

#[cfg(feature = "cuda")]
#[test]
fn cublas_is_probed_and_its_absence_is_reported_by_pgpo_info() {
    let missing = pgpo::backend::cuda::blas::blas_missing();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pgpo")).arg("info").output().unwrap();
    assert!(out.status.success(), "pgpo info failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("cublas: ")).unwrap_or_else(|| panic!("no cublas line in:\n{text}"));
    match missing {
        Some(why) => {
            assert!(why.contains("libcublas"), "{why}");
            assert!(line.contains("unavailable") && line.contains("own kernel"), "{line}");
        }
        None => assert!(line.contains("available"), "{line}"),
    }
}
