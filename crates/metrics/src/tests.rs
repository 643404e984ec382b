use memwarden_analysis::vm::FindingKind;
use memwarden_model::vm::{NovaInstance, ReadStatus, StatTag, TagUnit, VmSample};

use super::*;

#[test]
fn accept_header_picks_the_format() {
    // What Prometheus 2.x sends by default.
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    assert_eq!(Format::from_accept(None), Format::Prometheus);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Prometheus);
    assert_eq!(
        Format::from_accept(Some("text/plain;version=0.0.4")),
        Format::Prometheus
    );
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text; q=0.2, text/plain")),
        Format::Prometheus
    );
    assert_eq!(
        Format::from_accept(Some("application/openmetrics-text;q=0")),
        Format::Prometheus
    );
    assert!(Format::OpenMetrics
        .content_type()
        .starts_with("application/openmetrics-text; version=1.0.0"));
    assert!(Format::Prometheus.content_type().contains("version=0.0.4"));
}

fn odd_vm() -> VmSample {
    VmSample {
        name: "evil\"name\\with\nnewline".into(),
        uuid: Some("u-1".into()),
        config: memwarden_model::vm::VmConfig {
            nova: Some(NovaInstance {
                name: Some("web \"1\"".into()),
                project: Some("p\\q".into()),
                ..NovaInstance::default()
            }),
            ..Default::default()
        },
        ..VmSample::default()
    }
}

#[test]
fn a_vm_name_with_quotes_backslashes_and_newlines_stays_on_its_lines() {
    let mut sample = Sample::default();
    sample.vms.push(odd_vm());
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let text = render(&View::of(sample.clone()), &DaemonHealth::default(), format);
        let escaped = r#"domain="evil\"name\\with\nnewline""#;
        let info = text
            .lines()
            .find(|l| l.starts_with("memwarden_vm_info{"))
            .expect("an info line");
        assert!(info.contains(escaped), "{info}");
        assert!(
            info.contains(r#"nova_name="web \"1\"",nova_project="p\\q""#),
            "{info}"
        );
        // Every line is a comment or a sample: no label value spilled onto its own line.
        for l in text.lines() {
            assert!(l.starts_with('#') || l.contains(' '), "stray line {l:?}");
            assert!(!l.starts_with("newline"), "stray line {l:?}");
        }
    }
}

#[test]
fn a_vm_listed_twice_is_written_once() {
    let mut sample = Sample::default();
    sample.vms.push(odd_vm());
    sample.vms.push(odd_vm());
    let text = render(
        &View::of(sample.clone()),
        &DaemonHealth::default(),
        Format::Prometheus,
    );
    assert_eq!(text.matches("memwarden_vm_info{").count(), 1);
}

#[test]
fn unknown_balloon_tags_are_shown_and_unset_ones_are_not() {
    let mut vm = odd_vm();
    vm.name = "a".into();
    vm.balloon.tags = vec![
        StatTag {
            name: "stat-new".into(),
            value: 42,
            unit: TagUnit::Raw,
        },
        StatTag {
            name: "stat-unset".into(),
            value: u64::MAX,
            unit: TagUnit::Raw,
        },
    ];
    let sample = Sample {
        vms: vec![vm],
        ..Sample::default()
    };
    let text = render(
        &View::of(sample.clone()),
        &DaemonHealth::default(),
        Format::Prometheus,
    );
    assert!(text.contains(
        "memwarden_vm_balloon_unknown_stat{domain=\"a\",uuid=\"u-1\",stat=\"stat-new\"} 42\n"
    ));
    assert!(!text.contains("stat-unset"));
}

#[test]
fn labels_spell_kinds_and_statuses_as_the_json_does() {
    for k in [
        FindingKind::NoBalloonDevice,
        FindingKind::PollingOff,
        FindingKind::StaleStats,
        FindingKind::GuestDriverAbsent,
        FindingKind::UnsetValues,
        FindingKind::Inconsistent,
        FindingKind::NoUsable,
        FindingKind::WindowsGuest,
        FindingKind::Degraded,
        FindingKind::NotRead,
        FindingKind::Paused,
    ] {
        let json = serde_json::to_string(&k).expect("serializes");
        assert_eq!(json, format!("\"{}\"", vm::finding(k)));
    }
    for r in [
        ReadStatus::Ok,
        ReadStatus::Busy,
        ReadStatus::TimedOut,
        ReadStatus::Unreachable,
        ReadStatus::ProtocolError,
        ReadStatus::Gone,
    ] {
        let json = serde_json::to_string(&r).expect("serializes");
        assert_eq!(json, format!("\"{}\"", vm::read_status(r)));
    }
}

#[test]
fn daemon_counters_are_written_as_given() {
    let h = DaemonHealth {
        samples_total: 12,
        sample_errors_total: 1,
        last_sample_unix_ms: 1_500,
        balloon_actions_total: vec![("a".into(), "shrink".into(), 3)],
        ..DaemonHealth::default()
    };
    let text = render(&View::of(Sample::default()), &h, Format::Prometheus);
    for want in [
        "memwarden_samples_total 12\n",
        "memwarden_sample_errors_total 1\n",
        "memwarden_last_sample_timestamp_seconds 1.5\n",
        "memwarden_balloon_actions_total{domain=\"a\",direction=\"shrink\"} 3\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
}

#[test]
fn a_refused_reload_is_0_and_keeps_the_last_success_time() {
    let h = DaemonHealth {
        config_last_reload_successful: false,
        config_last_reload_success_unix_ms: 1_795_426_000_500,
        ..DaemonHealth::default()
    };
    let text = render(&View::of(Sample::default()), &h, Format::Prometheus);
    for want in [
        "memwarden_config_last_reload_successful 0\n",
        "memwarden_config_last_reload_success_timestamp_seconds 1795426000.5\n",
        "# TYPE memwarden_config_last_reload_successful gauge\n",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let ok = DaemonHealth {
        config_last_reload_successful: true,
        ..h
    };
    let text = render(&View::of(Sample::default()), &ok, Format::OpenMetrics);
    assert!(text.contains("memwarden_config_last_reload_successful 1\n"));
    assert!(
        text.contains("# UNIT memwarden_config_last_reload_success_timestamp_seconds seconds\n")
    );
}

#[test]
fn consumers_are_gauges_and_absent_when_the_host_has_none() {
    use memwarden_model::host::{
        DmaBufSource, DmaBufs, KstatEntry, Sockstat, SockstatEntry, ZfsArc, ZramMmStat,
    };
    let text = render(
        &View::of(Sample::default()),
        &DaemonHealth::default(),
        Format::Prometheus,
    );
    for family in ["zram", "socket_buffers", "dmabuf", "zfs"] {
        assert!(
            !text.contains(&format!("memwarden_host_{family}")),
            "{family} written for a host without it"
        );
    }
    let mut sample = Sample::default();
    sample.host.page_size_bytes = Some(4096);
    sample.host.zram = Some(vec![ZramMmStat {
        device: "zram0".into(),
        mem_used_total_bytes: 16 << 20,
        ..Default::default()
    }]);
    sample.host.sockstat = Some(Sockstat {
        entries: vec![SockstatEntry {
            protocol: "TCP".into(),
            key: "mem".into(),
            value: 3,
        }],
        ipv6: false,
    });
    sample.host.dmabuf = Some(DmaBufs::from_buffers(
        DmaBufSource::Sysfs,
        [("system", 8192)],
        false,
    ));
    let kstat = |name: &str, value| KstatEntry {
        name: name.into(),
        value,
    };
    sample.host.zfs = Some(ZfsArc {
        arcstats: vec![kstat("size", 140 << 20), kstat("hits", 7)],
        abdstats: Some(vec![kstat("scatter_data_size", 128 << 20)]),
    });
    let text = render(
        &View::of(sample.clone()),
        &DaemonHealth::default(),
        Format::Prometheus,
    );
    for line in [
        "memwarden_host_zram_mem_used_bytes{device=\"zram0\"} 16777216\n",
        "memwarden_host_socket_buffers_bytes{protocol=\"TCP\"} 12288\n",
        "memwarden_host_dmabuf_bytes{exporter=\"system\"} 8192\n",
        "memwarden_host_dmabuf_buffers{exporter=\"system\"} 1\n",
        "memwarden_host_zfs_arc_bytes{field=\"size\"} 146800640\n",
        "memwarden_host_zfs_abd_bytes{field=\"scatter_data_size\"} 134217728\n",
    ] {
        assert!(text.contains(line), "{line} missing");
    }
    assert!(text.contains("# TYPE memwarden_host_zram_mem_used_bytes gauge\n"));
    assert!(text.contains("# TYPE memwarden_host_zfs_arc_bytes gauge\n"));
    assert!(!text.contains("hits"), "event counters are not bytes");
}
