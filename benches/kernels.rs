//! Criterion benches of every kernel in `pgpo bench`, on every backend present, at the
//! quick shapes (software adapters get their smaller shapes). Throughput is reported per
//! case as bytes or as FLOPs counted in elements (criterion has no FLOP unit).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pgpo::bench::{cases, Work};
use pgpo::Device;

fn kernels(c: &mut Criterion) {
    let mut devices = vec![Device::Cpu];
    devices.extend(Device::wgpu().ok());
    devices.extend(Device::cuda(0).ok());
    for dev in &devices {
        let mut group = c.benchmark_group(dev.kind());
        group.sample_size(10);
        for mut case in cases(dev, true).expect("bench inputs") {
            group.throughput(match case.work {
                Work::Bytes(b) => Throughput::Bytes(b as u64),
                Work::Flops(f) => Throughput::Elements(f as u64),
            });
            group.bench_function(format!("{} {}", case.kernel, case.shape), |b| b.iter(|| (case.run)().expect("kernel runs")));
        }
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
