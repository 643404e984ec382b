//! On the live host: a light sample (no smaps_rollup, no vmallocinfo, as the daemon takes most
//! samples) cannot judge the identities that need them; its view shows them as judged on the
//! last full sample, with that sample's age, and the sample itself stays as read.

use std::sync::Arc;

use memwarden_analysis::accounting::{HostAccounting, IdentityResult, Verdict};
use memwarden_analysis::view::View;
use memwarden_model::Sample;
use memwarden_procfs::{HostReader, ReadOptions};

fn sample(at: u64, opts: ReadOptions) -> Arc<Sample> {
    let host = HostReader::live().read_host_with(opts).expect("live /proc");
    Arc::new(Sample {
        taken_at_unix_ms: at,
        host,
        ..Sample::default()
    })
}

fn identity<'a>(a: &'a HostAccounting, name: &str) -> &'a IdentityResult {
    a.identities
        .iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no identity {name:?}"))
}

#[test]
fn identities_needing_slow_files_are_shown_as_last_judged_on_light_samples() {
    let light_opts = ReadOptions {
        smaps: false,
        vmallocinfo: false,
        ..ReadOptions::default()
    };
    let full = View::new(sample(1_000, ReadOptions::default()), None);
    let alone = View::new(sample(31_000, light_opts), None);
    let light = View::new(sample(31_000, light_opts), Some(&full));
    for name in ["vmalloc", "mapped ≈ PSS"] {
        let then = identity(&full.accounting, name);
        assert_ne!(
            then.verdict,
            Verdict::NotApplicable,
            "{name} on a full sample"
        );
        assert_eq!(
            identity(&alone.accounting, name).verdict,
            Verdict::NotApplicable,
            "{name} cannot be judged on a light sample alone"
        );
        let carried = identity(&light.accounting, name);
        assert_eq!(carried.verdict, then.verdict, "{name}");
        assert_eq!(carried.residual_bytes, then.residual_bytes, "{name}");
        assert!(light.carried.identities.contains(&carried.name), "{name}");
    }
    assert_eq!(light.carried.age_s, Some(30));
    assert_eq!(light.carried.judged_at_unix_ms, Some(1_000));
    let json = serde_json::to_value(&light).expect("serializes");
    assert_eq!(json["carried"]["age_s"], 30, "{}", json["carried"]);
    assert!(
        json["sample"]["host"]["processes"]
            .as_array()
            .is_some_and(|p| p.iter().all(|p| p["smaps"].is_null())),
        "the sample stays as read"
    );
}
