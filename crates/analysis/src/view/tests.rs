use super::*;

fn identity(name: &'static str, verdict: Verdict, note: &str) -> IdentityResult {
    IdentityResult {
        name,
        left: "l".into(),
        right: "r".into(),
        left_bytes: Some(10),
        right_bytes: Some(9),
        residual_bytes: Some(1),
        tolerance_bytes: 4,
        explainable_bytes: 0,
        verdict,
        note: note.into(),
    }
}

#[test]
fn what_a_light_sample_cannot_judge_is_shown_as_last_judged_with_its_age() {
    let last = Judged {
        at_unix_ms: 10_000,
        identities: vec![
            identity("mapped ≈ PSS", Verdict::Holds, ""),
            identity("vmalloc", Verdict::Explained, "areas freed lazily"),
            identity("never", Verdict::NotApplicable, "no such file"),
        ],
    };
    let mut now = vec![
        identity("mapped ≈ PSS", Verdict::NotApplicable, "no PSS"),
        identity("vmalloc", Verdict::NotApplicable, "carried"),
        identity("never", Verdict::NotApplicable, "no such file"),
        identity("swap", Verdict::Broken, "fresh"),
    ];
    let carried = carry(&mut now, &last, 40_000);
    assert_eq!(carried.identities, vec!["mapped ≈ PSS", "vmalloc"]);
    assert_eq!(carried.judged_at_unix_ms, Some(10_000));
    assert_eq!(carried.age_s, Some(30));
    assert_eq!(now[0].verdict, Verdict::Holds);
    assert!(
        now[0]
            .note
            .starts_with("judged on the sample of 30 s before"),
        "{}",
        now[0].note
    );
    assert!(
        now[1].note.ends_with("; areas freed lazily"),
        "{}",
        now[1].note
    );
    assert_eq!(
        now[2].verdict,
        Verdict::NotApplicable,
        "nothing better to carry"
    );
    assert_eq!(now[3].verdict, Verdict::Broken, "judged now: kept");
}

#[test]
fn a_sample_that_reads_everything_carries_nothing_and_the_next_one_carries_its_judgement() {
    let mut full = Sample {
        taken_at_unix_ms: 5_000,
        ..Sample::default()
    };
    full.host.processes = vec![memwarden_model::host::ProcessMem {
        pid: 1,
        smaps: Some(memwarden_model::host::SmapsRollup::default()),
        ..Default::default()
    }];
    let v = View::new(Arc::new(full), None);
    assert_eq!(v.carried, Carried::default());
    assert_eq!(v.last_full.as_ref().map(|j| j.at_unix_ms), Some(5_000));
    let light = Sample {
        taken_at_unix_ms: 9_000,
        ..Sample::default()
    };
    let next = View::new(Arc::new(light.clone()), Some(&v));
    assert_eq!(
        next.last_full.as_ref().map(|j| j.at_unix_ms),
        Some(5_000),
        "kept for the samples after"
    );
    let alone = View::new(Arc::new(light), None);
    assert!(alone.last_full.is_none());
    assert_eq!(alone.carried, Carried::default());
}
