//! Render time and size of /metrics for a captured host alone, with 4 VMs and with 100 VMs, in
//! both formats, and the time to build the view the series are read from (the analyses:
//! accounting, KSM, VM figures and diagnoses), which the daemon pays once per sample rather than
//! per scrape. `cargo bench -p memwarden-metrics` (figures, never pass/fail).

use std::hint::black_box;
use std::time::Instant;

use memwarden_analysis::view::View;
use memwarden_metrics::{render, Format};

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let health = common::health();
    println!("host fixture host-6.18-sandbox; each figure the median of the rounds");
    for vms in [0, 4, 100] {
        let sample = common::sample("host-6.18-sandbox", vms);
        let mut builds: Vec<f64> = (0..50)
            .map(|_| {
                let t = Instant::now();
                black_box(View::of(black_box(sample.clone())));
                t.elapsed().as_secs_f64()
            })
            .collect();
        builds.sort_by(f64::total_cmp);
        println!(
            "{vms:>3} VMs view (once a sample, with a clone of the sample) {:>7.3} ms",
            builds[builds.len() / 2] * 1e3
        );
        let view = View::of(sample);
        for format in [Format::Prometheus, Format::OpenMetrics] {
            let rounds = if vms > 10 { 50 } else { 200 };
            let mut times: Vec<f64> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    black_box(render(black_box(&view), &health, format));
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let text = render(&view, &health, format);
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
