//! Property tests: meminfo render/parse roundtrip, and no parser panics on arbitrary input.

use memwarden_model::host::{Meminfo, MeminfoEntry, MeminfoUnit};
use memwarden_procfs as p;
use proptest::prelude::*;

fn entry() -> impl Strategy<Value = MeminfoEntry> {
    let key = "[A-Za-z][A-Za-z0-9_()]{0,20}";
    prop_oneof![
        (key, 0u64..=(u64::MAX / 1024)).prop_map(|(key, kib)| MeminfoEntry {
            key,
            value: kib * 1024,
            unit: MeminfoUnit::Bytes,
        }),
        (key, any::<u64>()).prop_map(|(key, value)| MeminfoEntry {
            key,
            value,
            unit: MeminfoUnit::Count,
        }),
    ]
}

fn lines() -> impl Strategy<Value = String> {
    // Kernel-file-like text: words, numbers, colons, `=`, units, odd bytes, newlines.
    prop::collection::vec(
        prop_oneof![
            "[A-Za-z_()]{1,12}:? +[0-9]{1,22}( kB)?",
            "(some|full) (avg10|avg60|avg300|total)=[0-9.a-z]{0,8}( [a-z0-9=.]{0,12}){0,4}",
            "0x[0-9a-f]{1,16}-0x[0-9a-f]{1,16} +[0-9]{1,8}( [a-z_+/0-9x=\\[\\]-]{1,20}){0,5}",
            "Node [0-9]{1,3} [A-Za-z]{1,8}: +[0-9]{1,8}( kB)?",
            "Node [0-9]{1,3}, zone +[A-Za-z0-9]{0,8}",
            " +(pages free|managed|present|spanned|pagesets|cpu:|count:|high:|batch:) +[0-9a-z-]{0,21}",
            "\\PC{0,40}",
        ],
        0..12,
    )
    .prop_map(|v| v.join("\n"))
}

proptest! {
    #[test]
    fn meminfo_roundtrips(mut entries in prop::collection::vec(entry(), 0..60)) {
        // The kernel prints each key once (a duplicate is refused): keep the first of each.
        let mut seen = std::collections::HashSet::new();
        entries.retain(|e| seen.insert(e.key.clone()));
        let m = Meminfo { entries };
        let text = p::render_meminfo(&m);
        prop_assert_eq!(p::parse_meminfo(&text).expect("rendered text parses"), m);
    }

    #[test]
    fn parsers_never_panic(text in lines()) {
        let _ = p::parse_meminfo(&text);
        let _ = p::parse_node_meminfo(&text);
        let _ = p::parse_vmstat(&text);
        let _ = p::parse_psi(&text);
        let _ = p::parse_vmallocinfo(&text);
        let _ = p::parse_modules(&text);
        let _ = p::parse_smaps_rollup(&text);
        let _ = p::parse_smaps(&text);
        let _ = p::parse_status(&text);
        let _ = p::parse_ksm_stat(&text);
        let _ = p::stat::parse(&text);
        let _ = p::parse_ksm_merging_pages(&text);
        let _ = p::zram::parse("zram0", &text);
        let _ = p::sockstat::parse("/proc/net/sockstat", &text);
        let _ = p::dmabuf::parse_bufinfo(&text, 16);
        if let Ok(z) = p::parse_zoneinfo(&text) {
            // Sums saturate; every pcp list belongs to a zone.
            let _ = (z.pcp_free_pages(), z.managed_pages());
        }
        let _ = p::selected_choice(&text);
        let files = vec![("run".to_string(), text.clone()), ("enabled".to_string(), text.clone())];
        let _ = p::ksm_sysfs(files.clone());
        let _ = p::thp_sysfs(files.clone());
        let _ = p::hugepages::pool(None, &text, &files);
    }

    #[test]
    fn parsers_never_panic_on_any_string(text in "\\PC*") {
        let _ = p::parse_meminfo(&text);
        let _ = p::parse_vmallocinfo(&text);
        let _ = p::parse_psi(&text);
        let _ = p::parse_status(&text);
        let _ = p::parse_smaps(&text);
        let _ = p::parse_zoneinfo(&text);
        let _ = p::zram::parse("zram0", &text);
        let _ = p::sockstat::parse("/proc/net/sockstat6", &text);
        let _ = p::dmabuf::parse_bufinfo(&text, 16);
    }
}
