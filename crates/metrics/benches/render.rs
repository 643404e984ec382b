//! Render time and size of /metrics for a captured host alone, with 4 VMs and with 100 VMs, in
//! both formats. Render time includes the analyses (accounting, KSM, VM figures and diagnoses)
//! that derive the series from the Sample. `cargo bench -p memwarden-metrics` (figures, never pass/fail).

use std::hint::black_box;
use std::time::Instant;

use memwarden_metrics::{render, Format};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let health = common::health();
    println!("host fixture host-6.18-sandbox; each figure the median of the rounds");
    for vms in [0, 4, 100] {
        let sample = common::sample("host-6.18-sandbox", vms);
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let rounds = if vms > 10 { 50 } else { 200 };
            let mut times: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    black_box(render(black_box(&sample), &health, format));
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let text = render(&sample, &health, format);
            let series = text.lines().filter(|l| !l.starts_with('#')).count();
            println!(
                "{vms:>3} VMs {:<11} render {:>7.3} ms  {:>7} bytes  {series:>5} series",
                format!("{format:?}"),
                times[times.len() / 2] * 1e3,
                text.len(),
            );
        }
    }
}
