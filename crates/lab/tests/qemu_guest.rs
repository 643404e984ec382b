//! End-to-end: a plain QEMU lab guest boots, its console works, and its own
//! /proc/meminfo parses and moves when the guest fills a tmpfs.

use memwarden_lab::{Error, GuestOpts, Lab, QemuGuest};

#[test]
fn plain_qemu_guest_meminfo_parses_and_fill_moves_it() -> memwarden_lab::Result<()> {
    let t0 = std::time::Instant::now();
    let lab = Lab::new()?;
    eprintln!("Lab::new in {:?}", t0.elapsed());
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "lab-test-qemu".into(),
            mem_mib: 512,
            ..Default::default()
        },
    )?;
    eprintln!(
        "guest {} ready in {:?} (pid {})",
        lab.kernel_release(),
        g.boot_time(),
        g.pid()
    );
    assert!(
        g.qmp_socket().exists(),
        "no QMP socket in {}",
        g.run_dir().display()
    );

    let before = g.meminfo()?;
    let total = before["MemTotal"];
    // 512 MiB of RAM minus what the kernel reserves: ~470-490 MiB on 6.1/6.12.
    assert!(
        (440 * 1024..=512 * 1024).contains(&total),
        "MemTotal {total} kB is not ~480 MiB"
    );
    assert!(before["MemFree"] < total && before["MemAvailable"] <= total);
    assert!(before.len() > 30, "only {} meminfo keys", before.len());

    g.console("fill 64")?;
    let after = g.meminfo()?;
    let shmem_growth = after["Shmem"] - before["Shmem"].min(after["Shmem"]);
    assert!(
        (60 * 1024..=70 * 1024).contains(&shmem_growth),
        "Shmem grew by {shmem_growth} kB after fill 64"
    );

    // A failing and an unknown command are errors, not output.
    assert!(matches!(
        g.console("run false"),
        Err(Error::Command { rc: 1, .. })
    ));
    assert!(matches!(
        g.console("no-such-command"),
        Err(Error::Command { rc: 255, .. })
    ));
    eprintln!("whole test in {:?}", t0.elapsed());
    Ok(())
}

#[test]
fn debian_6_12_guest_boots_and_reports_its_kernel() -> memwarden_lab::Result<()> {
    let lab = Lab::with_kernel(memwarden_lab::Kernel::Debian6_12)?;
    assert!(
        lab.kernel_release().starts_with("6.12."),
        "{}",
        lab.kernel_release()
    );
    let g = QemuGuest::boot(
        &lab,
        GuestOpts {
            name: "lab-test-612".into(),
            ..Default::default()
        },
    )?;
    let uname = g.console("run uname -r")?;
    assert_eq!(uname.trim(), lab.kernel_release());
    assert!(g.meminfo()?["MemTotal"] > 400 * 1024);
    Ok(())
}
