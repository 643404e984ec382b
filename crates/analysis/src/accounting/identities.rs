//! The kernel's meminfo identities, as data, and their evaluation on a sample.
//!
//! An identity does not "pass" or "fail" like a test: the kernel updates its counters without a
//! global lock, per-CPU batches lag, and some pages legitimately sit on one side only (mlocked
//! pages leave the anon/file LRUs for Unevictable). So each identity reports its residual, the
//! tolerance it was judged with, and, when the residual is larger, whether a named, measurable
//! cause covers it.

use memwarden_model::host::HostSample;
use serde::Serialize;

use super::terms::{sum, Term};
use memwarden_model::units::MIB;

/// How far apart the two sides may be before the residual needs an explanation.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    /// Always allowed, in bytes (per-CPU counter drift, pages in flight).
    pub abs_bytes: u64,
    /// Allowed as a fraction of MemTotal, for sums over processes read at different instants.
    pub frac_of_memtotal: f64,
}

impl Tolerance {
    fn bytes(&self, s: &HostSample) -> u64 {
        let rel = s.meminfo.get_or_zero("MemTotal") as f64 * self.frac_of_memtotal;
        self.abs_bytes.max(rel as u64)
    }
}

/// `left = right`, with what can legitimately make it not hold.
#[derive(Debug, Clone, Serialize)]
pub struct Identity {
    pub name: &'static str,
    pub left: &'static [Term],
    pub right: &'static [Term],
    pub tolerance: Tolerance,
    /// Terms whose sum bounds a residual that known kernel behaviour explains (e.g. mlocked pages).
    pub explained_by: &'static [Term],
    /// Why it can break, in plain words.
    pub why: &'static str,
}

const TIGHT: Tolerance = Tolerance {
    abs_bytes: 4 * MIB,
    frac_of_memtotal: 0.0,
};
const EXACT: Tolerance = Tolerance {
    abs_bytes: 0,
    frac_of_memtotal: 0.0,
};

/// Every identity memwarden checks, in report order.
pub const IDENTITIES: &[Identity] = &[
    Identity {
        name: "anon LRU",
        left: &[Term::Meminfo("Active(anon)"), Term::Meminfo("Inactive(anon)")],
        right: &[Term::Meminfo("AnonPages"), Term::Meminfo("Shmem")],
        tolerance: TIGHT,
        explained_by: &[Term::Meminfo("Unevictable"), Term::Meminfo("SwapCached")],
        why: "mlocked anon/shmem pages move to Unevictable; swap-cache pages sit on the anon LRU \
              without being AnonPages; pages in per-CPU LRU batches are on no list yet; MADV_FREE'd \
              anon pages move to the file LRU",
    },
    Identity {
        name: "file LRU",
        left: &[
            Term::Meminfo("Active(file)"),
            Term::Meminfo("Inactive(file)"),
            Term::Meminfo("Shmem"),
        ],
        right: &[Term::Meminfo("Cached"), Term::Meminfo("Buffers")],
        tolerance: TIGHT,
        explained_by: &[Term::Meminfo("Unevictable")],
        why: "mlocked file pages (and ramfs pages) are on Unevictable, not the file LRU; lazily \
              freed anon pages (MADV_FREE) sit on the file LRU; per-CPU LRU batches",
    },
    Identity {
        name: "LRU lists",
        left: &[Term::Meminfo("Active"), Term::Meminfo("Inactive"), Term::Meminfo("Unevictable")],
        right: &[
            Term::Meminfo("Active(anon)"),
            Term::Meminfo("Inactive(anon)"),
            Term::Meminfo("Active(file)"),
            Term::Meminfo("Inactive(file)"),
            Term::Meminfo("Unevictable"),
        ],
        tolerance: EXACT,
        explained_by: &[],
        why: "holds by construction in fs/proc/meminfo.c (Active and Inactive are printed as sums \
              of the per-type lists); a residual means the file is corrupt or was edited",
    },
    Identity {
        name: "slab",
        left: &[Term::Meminfo("Slab")],
        right: &[Term::Meminfo("SReclaimable"), Term::Meminfo("SUnreclaim")],
        tolerance: EXACT,
        explained_by: &[],
        why: "holds by construction (Slab is printed as the sum); a residual means corruption",
    },
    Identity {
        name: "vmalloc",
        left: &[Term::Meminfo("VmallocUsed")],
        right: &[Term::VmallocAllocPages],
        tolerance: TIGHT,
        explained_by: &[],
        why: "VmallocUsed counts pages of vmalloc() areas (since Linux 5.3; 0 on 4.4–5.2); the two \
              files are read at different instants. The size column of vmallocinfo is not the same \
              thing: it includes a guard page per area, and ioremap/vmap areas are not RAM",
    },
    Identity {
        name: "THP",
        left: &[Term::Meminfo("AnonHugePages")],
        right: &[Term::ProcsAnonHugePages],
        tolerance: TIGHT,
        explained_by: &[],
        why: "processes memwarden may not read (permission, other PID namespaces) are missing from \
              the right; huge pages split or collapsed between the reads; THP in the swap cache",
    },
    Identity {
        name: "mapped ≈ PSS",
        left: &[Term::Meminfo("Mapped"), Term::Meminfo("AnonPages")],
        right: &[Term::ProcsPss],
        tolerance: Tolerance { abs_bytes: 16 * MIB, frac_of_memtotal: 0.01 },
        explained_by: &[Term::Meminfo("SwapCached")],
        why: "an approximation: PSS also counts device/PFN maps and misses unreadable processes; \
              anon pages not mapped by any process (swap cache, in flight) are in AnonPages only; \
              processes are read one after another while memory moves",
    },
    Identity {
        name: "dirty",
        left: &[
            Term::Meminfo("Dirty"),
            Term::Meminfo("NFS_Unstable"),
            Term::Meminfo("Writeback"),
        ],
        right: &[Term::VmstatDirtyTotal],
        tolerance: TIGHT,
        explained_by: &[],
        why: "total dirty = Dirty + NFS_Unstable + Writeback; meminfo and vmstat are read at \
              different instants while writeback runs (NFS_Unstable is always 0 since Linux 5.8)",
    },
];

/// How an identity fared on one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// |residual| within tolerance.
    Holds,
    /// Larger than tolerance, but within what the named causes can account for.
    Explained,
    /// Larger than tolerance and than every named cause: worth a look.
    Broken,
    /// A term is missing on this kernel or sample.
    NotApplicable,
}

/// The outcome of one identity on one sample.
#[derive(Debug, Clone, Serialize)]
pub struct IdentityResult {
    pub name: &'static str,
    pub left: String,
    pub right: String,
    pub left_bytes: Option<u64>,
    pub right_bytes: Option<u64>,
    /// left − right.
    pub residual_bytes: Option<i128>,
    pub tolerance_bytes: u64,
    /// Sum of the `explained_by` terms on this sample.
    pub explainable_bytes: u64,
    pub verdict: Verdict,
    /// Why it did not apply, or why it can break.
    pub note: String,
}

fn side_label(terms: &[Term]) -> String {
    terms
        .iter()
        .map(Term::label)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Evaluates one identity.
pub fn evaluate(id: &Identity, s: &HostSample) -> IdentityResult {
    let tolerance_bytes = id.tolerance.bytes(s);
    let explainable_bytes = id
        .explained_by
        .iter()
        .filter_map(|t| t.value(s))
        .fold(0u64, u64::saturating_add);
    let mut r = IdentityResult {
        name: id.name,
        left: side_label(id.left),
        right: side_label(id.right),
        left_bytes: None,
        right_bytes: None,
        residual_bytes: None,
        tolerance_bytes,
        explainable_bytes,
        verdict: Verdict::NotApplicable,
        note: id.why.to_string(),
    };
    let (l, rt) = match (sum(id.left, s), sum(id.right, s)) {
        (Ok(l), Ok(rt)) => (l, rt),
        (Err(Term::VmallocAllocPages), _) | (_, Err(Term::VmallocAllocPages))
            if s.vmalloc
                .as_ref()
                .is_some_and(|v| v.carried_from_unix_ms.is_some()) =>
        {
            r.note = "vmallocinfo was not read with this sample's meminfo (its summary is \
                      carried from the last read, made on the PSS cadence)"
                .to_string();
            return r;
        }
        (Err(t), _) | (_, Err(t)) => {
            r.note = format!("{} is not available on this sample", t.label());
            return r;
        }
    };
    let residual = i128::from(l) - i128::from(rt);
    let mag = residual.unsigned_abs();
    r.left_bytes = Some(l);
    r.right_bytes = Some(rt);
    r.residual_bytes = Some(residual);
    r.verdict = if mag <= u128::from(tolerance_bytes) {
        Verdict::Holds
    } else if mag <= u128::from(tolerance_bytes) + u128::from(explainable_bytes) {
        Verdict::Explained
    } else {
        Verdict::Broken
    };
    r
}

/// Evaluates every identity in [`IDENTITIES`].
pub fn evaluate_all(s: &HostSample) -> Vec<IdentityResult> {
    IDENTITIES.iter().map(|id| evaluate(id, s)).collect()
}
