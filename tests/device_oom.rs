//! An out-of-memory on a wgpu device is an error, not an abort. A child process (this test
//! binary again) caps its address space with RLIMIT_AS and allocates device buffers until
//! the driver refuses one; lavapipe's device memory is host memory, so the cap is reached.

#![cfg(feature = "wgpu")]

mod common;

use std::os::unix::process::CommandExt;

const CHILD: &str = "PGPO_OOM_CHILD";

/// The child: allocate 128 MiB buffers until one fails, then report how. Ignored: it is the
/// child process's entry point, run by the test below.
#[test]
#[ignore]
fn oom_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let dev = pgpo::backend::wgpu::WgpuDevice::new().unwrap();
    let n = (dev.limits().max_storage_buffer_binding_size as usize / 4).min(1 << 25);
    let mut held = Vec::new();
    for i in 0..256 {
        match dev.alloc(n).and_then(|b| dev.synchronize().map(|()| b)) {
            Ok(b) => held.push(b),
            Err(e) => {
                println!("OOM-ERROR after {i} buffers: {e}");
                return;
            }
        }
    }
    println!("NO-ERROR: {} buffers held", held.len());
}

#[test]
fn a_wgpu_out_of_memory_is_an_error_not_an_abort() {
    if common::backend("wgpu").is_none() {
        return;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vm_kb: u64 = status.lines().find(|l| l.starts_with("VmSize:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap();
    let cap = (vm_kb * 1024) + (3u64 << 30);
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", "oom_child", "--ignored", "--nocapture", "--test-threads", "1"]).env(CHILD, "1");
    unsafe {
        c.pre_exec(move || {
            let r = libc::rlimit { rlim_cur: cap, rlim_max: cap };
            if libc::setrlimit(libc::RLIMIT_AS, &r) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let o = c.output().unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    println!("{out}");
    assert!(o.status.success(), "the child died instead of returning an error: {:?}\n{out}", o.status);
    assert!(out.contains("OOM-ERROR after"), "{out}");
}
