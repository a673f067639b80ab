//! Backend discovery shared by the test binaries.

use pgpo::Device;

/// The device of `kind` ("cpu", "wgpu" or "cuda"), or `None` with a printed line when it is
/// absent. `PGPO_REQUIRE_WGPU=1`, `PGPO_REQUIRE_CUDA=1` and `PGPO_REQUIRE_CUDA_EMU=1` turn
/// that skip into a failure.
#[allow(dead_code)]
pub fn backend(kind: &str) -> Option<Device> {
    let dev = match kind {
        "cpu" => return Some(Device::Cpu),
        "wgpu" => Device::wgpu(),
        "cuda" => Device::cuda(0),
        "cuda-emu" => Device::cuda_emu(),
        other => panic!("unknown backend {other}"),
    };
    match dev {
        Ok(d) => Some(d),
        Err(e) => {
            skip(kind, &e.to_string());
            None
        }
    }
}

/// Says in one line that a test skips because `kind` is absent, and why; a failure instead
/// when PGPO_REQUIRE_<KIND>=1.
#[allow(dead_code)]
pub fn skip(kind: &str, why: &str) {
    let require = format!("PGPO_REQUIRE_{}", kind.to_uppercase().replace('-', "_"));
    if std::env::var(&require).as_deref() == Ok("1") {
        panic!("{require}=1 but {kind} is absent: {why}");
    }
    println!("skipping {kind}: {why}");
}
