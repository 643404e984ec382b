#![no_main]
//! The sysfs directory builders (KSM, UKSM, THP, hugepage pools) on arbitrary file contents:
//! the first line of input is a pool directory name, the rest the contents of every file.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (dir, contents) = text.split_once('\n').unwrap_or((&text, ""));
    let files: Vec<(String, String)> = [
        "run",
        "general_profit",
        "advisor_mode",
        "enabled",
        "nr_hugepages",
        "free_hugepages",
        "surplus_hugepages",
        "resv_hugepages",
    ]
    .iter()
    .map(|n| (n.to_string(), contents.to_string()))
    .collect();
    let k = memwarden_procfs::ksm_sysfs(files.clone());
    assert_eq!(k.files.len(), files.len());
    let _ = memwarden_procfs::uksm_sysfs(files.clone());
    let _ = memwarden_procfs::thp_sysfs(files.clone());
    let _ = memwarden_procfs::hugepages::pool(Some(0), dir, &files);
    let _ = memwarden_procfs::selected_choice(contents);
});
