//! What a simulated VM is: its QEMU-level facts and, when it has one, its virtio-balloon
//! device with the statistics its guest driver last pushed.

/// One simulated QEMU (`-name`, `-uuid`, `-m`) and its balloon device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestState {
    /// `-name`; `None` makes `query-name` answer `{}` as QEMU does without `-name`.
    pub name: Option<String>,
    /// `-uuid`; `None` answers QEMU's all-zero UUID.
    pub uuid: Option<String>,
    /// `query-status` status: `running`, `paused`, ... (`running` is true only for `running`).
    pub status: String,
    /// `-m`: `query-memory-size-summary` `base-memory`, bytes.
    pub ram_bytes: u64,
    /// `-device virtio-balloon-pci`; `None` = no balloon device.
    pub balloon: Option<BalloonState>,
    /// Precede every Nth reply of a connection with a `BALLOON_CHANGE` event (0 = never;
    /// events that a `balloon` command causes are sent regardless).
    pub event_every: u32,
}

/// A `virtio-balloon-pci` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalloonState {
    /// The device `id=` (QOM path `/machine/peripheral/ID`); `None` = an anonymous device,
    /// found under `/machine/peripheral-anon/device[0]`.
    pub id: Option<String>,
    /// `query-balloon` `actual`, bytes.
    pub actual_bytes: u64,
    /// `guest-stats-polling-interval`, seconds (0 = off).
    pub polling_interval_s: u64,
    pub deflate_on_oom: bool,
    pub free_page_reporting: bool,
    /// What the guest driver last pushed.
    pub stats: GuestStats,
    /// `last-update`, seconds since the Unix epoch. While polling is on, replies report the
    /// latest multiple of the interval (the guest keeps pushing); while off, this value.
    pub last_update_unix_s: u64,
}

/// `guest-stats` `stats`: the ten `stat-*` keys QEMU 7.2 prints, raw (bytes or counts).
/// `u64::MAX` is QEMU's "the guest did not report this one".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestStats {
    pub swap_in: u64,
    pub swap_out: u64,
    pub major_faults: u64,
    pub minor_faults: u64,
    /// Guest MemFree, bytes.
    pub free_memory: u64,
    /// Guest MemTotal, bytes.
    pub total_memory: u64,
    /// Guest MemAvailable, bytes.
    pub available_memory: u64,
    /// Guest Cached + Buffers + SwapCached, bytes.
    pub disk_caches: u64,
    pub htlb_pgalloc: u64,
    pub htlb_pgfail: u64,
}

const MIB: u64 = 1 << 20;

impl GuestStats {
    /// In QEMU's (hash) order, as `qom-get guest-stats` prints them.
    pub(crate) fn qemu_order(&self) -> [(&'static str, u64); 10] {
        [
            ("stat-htlb-pgalloc", self.htlb_pgalloc),
            ("stat-swap-out", self.swap_out),
            ("stat-available-memory", self.available_memory),
            ("stat-htlb-pgfail", self.htlb_pgfail),
            ("stat-free-memory", self.free_memory),
            ("stat-minor-faults", self.minor_faults),
            ("stat-major-faults", self.major_faults),
            ("stat-total-memory", self.total_memory),
            ("stat-swap-in", self.swap_in),
            ("stat-disk-caches", self.disk_caches),
        ]
    }
}

impl GuestState {
    /// A 512 MiB lab-like guest named `name`, balloon `balloon0` polled every 2 s, figures as
    /// the real lab guest reported them (tests/data/qemu-7.2-balloon.jsonl).
    pub fn new(name: &str) -> GuestState {
        GuestState::sized(name, 512 * MIB)
    }

    /// Like [`GuestState::new`] with `ram_bytes` of RAM: the guest kernel keeps ~8% + 3 MiB
    /// out of MemTotal and uses 28 MiB plus 0.6% of RAM as page cache.
    pub fn sized(name: &str, ram_bytes: u64) -> GuestState {
        let total = ram_bytes - ram_bytes / 12 - 3 * MIB;
        let cache = 3 * MIB + ram_bytes / 170;
        let used = 25 * MIB;
        let free = total.saturating_sub(used + cache);
        GuestState {
            name: Some(name.to_string()),
            uuid: Some(uuid_for(name)),
            status: "running".into(),
            ram_bytes,
            balloon: Some(BalloonState {
                id: Some("balloon0".into()),
                actual_bytes: ram_bytes,
                polling_interval_s: 2,
                deflate_on_oom: false,
                free_page_reporting: false,
                stats: GuestStats {
                    swap_in: 0,
                    swap_out: 0,
                    major_faults: 0,
                    minor_faults: 689,
                    free_memory: free,
                    total_memory: total,
                    available_memory: free.saturating_sub(290 * 1024) + cache / 2,
                    disk_caches: cache,
                    htlb_pgalloc: 0,
                    htlb_pgfail: 0,
                },
                last_update_unix_s: now_unix_s(),
            }),
            event_every: 4,
        }
    }

    /// The same guest with numbers that cannot be true: free > total, usable (available)
    /// > total, and total > actual (the balloon's size).
    pub fn liar(name: &str) -> GuestState {
        let mut g = GuestState::new(name);
        if let Some(b) = g.balloon.as_mut() {
            b.actual_bytes = 256 * MIB;
            b.stats.total_memory = 480 * MIB;
            b.stats.free_memory = 600 * MIB;
            b.stats.available_memory = 700 * MIB;
        }
        g
    }

    /// The `i`th of a fleet: names `vm0`, `vm1`, ..., RAM 512 MiB, 1, 1.5 or 2 GiB in turn.
    pub fn fleet(i: usize) -> GuestState {
        GuestState::sized(&format!("vm{i}"), 512 * MIB * (1 + (i as u64 % 4)))
    }

    /// `balloon value=target`: QEMU clamps the target to RAM; the simulated guest gives the
    /// memory back at once. Without deflate-on-oom the driver lowers MemTotal; with it,
    /// MemTotal stays and the pages come out of MemFree (see the README's black hole).
    pub(crate) fn set_balloon_target(&mut self, target: u64) {
        let ram = self.ram_bytes;
        let Some(b) = self.balloon.as_mut() else {
            return;
        };
        let target = target.min(ram);
        let st = &mut b.stats;
        if target < b.actual_bytes {
            let d = b.actual_bytes - target;
            if !b.deflate_on_oom {
                st.total_memory = st.total_memory.saturating_sub(d);
            }
            st.free_memory = st.free_memory.saturating_sub(d);
            st.available_memory = st.available_memory.saturating_sub(d);
        } else {
            let d = target - b.actual_bytes;
            if !b.deflate_on_oom {
                st.total_memory = st.total_memory.saturating_add(d);
            }
            st.free_memory = st.free_memory.saturating_add(d);
            st.available_memory = st.available_memory.saturating_add(d);
        }
        b.actual_bytes = target;
        if b.polling_interval_s > 0 {
            b.last_update_unix_s = now_unix_s();
        }
    }
}

impl BalloonState {
    /// `last-update` as a reply reports it now.
    pub(crate) fn last_update(&self) -> u64 {
        match self.polling_interval_s {
            0 => self.last_update_unix_s,
            p => {
                let now = now_unix_s();
                (now - now % p).max(self.last_update_unix_s)
            }
        }
    }

    /// Where `qom-list` shows it: (base path, child name).
    pub(crate) fn qom_place(&self) -> (&'static str, String) {
        match &self.id {
            Some(id) => ("/machine/peripheral", id.clone()),
            None => ("/machine/peripheral-anon", "device[0]".into()),
        }
    }
}

/// A stable, well-formed UUID made from the name (FNV-1a), so runs repeat.
fn uuid_for(name: &str) -> String {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for b in name.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let x = format!("{h:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &x[0..8],
        &x[8..12],
        &x[13..16],
        &x[17..20],
        &x[20..32]
    )
}

pub(crate) fn now_unix_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_numbers_add_up_and_liar_ones_do_not() {
        for i in 0..8 {
            let g = GuestState::fleet(i);
            let b = g.balloon.as_ref().expect("balloon");
            let st = b.stats;
            assert!(st.free_memory <= st.total_memory, "{i}: {st:?}");
            assert!(st.available_memory <= st.total_memory, "{i}: {st:?}");
            assert!(st.total_memory <= b.actual_bytes, "{i}: {st:?}");
        }
        let l = GuestState::liar("x");
        let b = l.balloon.expect("balloon");
        assert!(b.stats.free_memory > b.stats.total_memory);
        assert!(b.stats.available_memory > b.stats.total_memory);
        assert!(b.stats.total_memory > b.actual_bytes);
    }

    #[test]
    fn balloon_lowers_memtotal_unless_deflate_on_oom() {
        let mut g = GuestState::new("a");
        let t0 = g.balloon.as_ref().map(|b| b.stats.total_memory);
        g.set_balloon_target(384 * MIB);
        let b = g.balloon.clone().expect("balloon");
        assert_eq!(b.actual_bytes, 384 * MIB);
        assert_eq!(Some(b.stats.total_memory + 128 * MIB), t0);
        g.set_balloon_target(4096 * MIB);
        assert_eq!(g.balloon.as_ref().map(|b| b.actual_bytes), Some(512 * MIB));
        assert_eq!(g.balloon.as_ref().map(|b| b.stats.total_memory), t0);

        let mut d = GuestState::new("d");
        if let Some(b) = d.balloon.as_mut() {
            b.deflate_on_oom = true;
        }
        let f0 = d.balloon.as_ref().map(|b| b.stats.free_memory);
        d.set_balloon_target(384 * MIB);
        let b = d.balloon.expect("balloon");
        assert_eq!(Some(b.stats.total_memory), t0);
        assert_eq!(Some(b.stats.free_memory + 128 * MIB), f0);
    }

    #[test]
    fn uuids_are_well_formed_and_distinct() {
        let a = uuid_for("vm0");
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
        assert_ne!(a, uuid_for("vm1"));
    }
}
