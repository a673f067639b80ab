//! Backend discovery shared by the test binaries.

use pgpo::Device;

/// The device of `kind` ("cpu", "wgpu" or "cuda"), or `None` with a printed line when it is
/// absent. `PGPO_REQUIRE_WGPU=1` / `PGPO_REQUIRE_CUDA=1` turn that skip into a failure.
pub fn backend(kind: &str) -> Option<Device> {
    let (dev, require) = match kind {
        "cpu" => return Some(Device::Cpu),
        "wgpu" => (Device::wgpu(), "PGPO_REQUIRE_WGPU"),
        "cuda" => (Device::cuda(0), "PGPO_REQUIRE_CUDA"),
        other => panic!("unknown backend {other}"),
    };
    match dev {
        Ok(d) => Some(d),
        Err(e) if std::env::var(require).as_deref() == Ok("1") => panic!("{require}=1 but {kind} is absent: {e}"),
        Err(e) => {
            println!("skipping {kind}: {e}");
            None
        }
    }
}
