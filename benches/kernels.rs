//! Criterion benches, on every backend present: the workloads of `pgpo bench` at their quick
//! shapes (software adapters get smaller ones), with throughput as bytes or as FLOPs counted
//! in elements (criterion has no FLOP unit); and every kernel of `pgpo check` at the largest
//! shape of its correctness cases, so no kernel goes unmeasured.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgpo::bench::{cases, Work};
use pgpo::Device;

/// The CPU and every GPU backend present; an absent one is named on stderr with the reason.
fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    for (kind, dev) in [("wgpu", Device::wgpu()), ("cuda", Device::cuda(0))] {
        match dev {
            Ok(d) => devices.push(d),
            Err(e) => eprintln!("skipping {kind}: {e}"),
        }
    }
    devices
}

fn kernels(c: &mut Criterion) {
    let devices = devices();
    for dev in &devices {
        let mut group = c.benchmark_group(dev.kind());
        group.sample_size(10);
        for mut case in cases(dev, true, &|_| true).expect("bench inputs") {
            group.throughput(match case.work {
                Work::Bytes(b) => Throughput::Bytes(b as u64),
                Work::Flops(f) => Throughput::Elements(f as u64),
                Work::Tokens(t) => Throughput::Elements(t as u64),
            });
            group.bench_function(format!("{} {}", case.kernel, case.shape), |b| b.iter(|| (case.run)().expect("kernel runs")));
        }
        group.finish();
    }
}

fn every_checked_kernel(c: &mut Criterion) {
    let devices = devices();
    for dev in &devices {
        let mut group = c.benchmark_group(format!("{} check shapes", dev.kind()));
        group.sample_size(10);
        for check in pgpo::check::all() {
            let shape = check.shapes.last().expect("every check has a shape");
            let inputs = (check.inputs)(shape, &mut pgpo::rng::Rng::new(1));
            group.bench_function(format!("{} {shape:?}", check.name), |b| {
                b.iter(|| {
                    let out = (check.run)(dev, shape, &inputs).expect("kernel runs");
                    dev.synchronize().expect("device finishes");
                    out
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, kernels, every_checked_kernel);
criterion_main!(benches);
