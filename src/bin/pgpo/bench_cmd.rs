//! `pgpo bench`: the kernel timing table, or JSON.

use super::check_cmd::devices;

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn bench(which: &str, json: bool, quick: bool, filter: Option<&str>) -> pgpo::Result<bool> {
    let devices = devices(which)?;
    let mut all = Vec::new();
    if !json {
        println!(
            "{:<22} {:<10} {:<34} {:>10} {:>10} {:>10} {:>10} {:>7} {:>10}",
            "kernel", "backend", "shape", "ms", "GFLOP/s", "GB/s", "tokens/s", "% peak", "peak MB"
        );
    }
    for d in &devices {
        for r in pgpo::bench::run(d, quick, filter)? {
            if !json {
                let opt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.1}"));
                println!(
                    "{:<22} {:<10} {:<34} {:>10.3} {:>10} {:>10} {:>10} {:>7} {:>10}",
                    r.kernel,
                    d.kind(),
                    r.shape,
                    r.ms,
                    opt(r.gflops),
                    opt(r.gbps),
                    opt(r.tokens_per_s),
                    opt(r.pct_peak),
                    opt(r.peak_bytes.map(|b| b as f64 / 1e6))
                );
                if let Some(t) = r.transfers {
                    println!("{:<22} host reads {} ({} B), host writes {} ({} B), queue waits {}", "", t.host_reads, t.host_read_bytes, t.host_writes, t.host_write_bytes, t.waits);
                }
                if let (Some(rss), Some(est)) = (r.peak_rss_bytes, r.estimate_bytes) {
                    println!("{:<22} peak resident memory {:.2} GB, the trainer's estimate {:.2} GB ({:.2}x)", "", rss as f64 / 1e9, est as f64 / 1e9, est as f64 / rss as f64);
                }
            }
            all.push(r);
        }
    }
    if json {
        let items: Vec<String> = all
            .iter()
            .map(|r| {
                let mut f = vec![
                    format!("\"kernel\":{}", json_str(r.kernel)),
                    format!("\"backend\":{}", json_str(&r.backend)),
                    format!("\"shape\":{}", json_str(&r.shape)),
                    format!("\"ms\":{:.6}", r.ms),
                ];
                f.extend(r.gflops.map(|g| format!("\"gflops\":{g:.3}")));
                f.extend(r.gbps.map(|g| format!("\"gbps\":{g:.3}")));
                f.extend(r.tokens_per_s.map(|t| format!("\"tokens_per_s\":{t:.1}")));
                f.extend(r.pct_peak.map(|p| format!("\"pct_peak\":{p:.2}")));
                f.extend(r.peak_bytes.map(|b| format!("\"peak_bytes\":{b}")));
                f.extend(r.peak_rss_bytes.map(|b| format!("\"peak_rss_bytes\":{b}")));
                f.extend(r.estimate_bytes.map(|b| format!("\"estimate_bytes\":{b}")));
                if let Some(t) = r.transfers {
                    f.extend(t.fields().iter().map(|(k, v)| format!("\"{k}\":{v}")));
                }
                format!("{{{}}}", f.join(","))
            })
            .collect();
        println!("[{}]", items.join(",\n "));
    }
    Ok(true)
}
