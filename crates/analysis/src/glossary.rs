//! The field glossary: what each key memwarden reads means, in English and Simplified Chinese.
//!
//! Five kinds of keys are covered: `/proc/meminfo` fields (including the arch and hugetlb
//! hooks), the KSM files under `/sys/kernel/mm/ksm/`, the `/proc/PID/smaps_rollup` keys, and
//! the virtio-balloon statistics as libvirt and QEMU name them; and the consumers no meminfo
//! field counts (zram, socket buffers, DMA-buf, the ZFS ARC), by the label of their row. The text lives in TOML files
//! under `crates/analysis/data/glossary/`, embedded at build time and parsed once.
//!
//! A key the glossary does not know gives `None`: callers keep and show such a field, they just
//! cannot explain it.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

/// Which file or interface a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `/proc/meminfo`.
    Meminfo,
    /// `/sys/kernel/mm/ksm/*`.
    Ksm,
    /// `/proc/PID/smaps_rollup` (the same keys appear per mapping in `smaps`).
    Smaps,
    /// virtio-balloon statistics: libvirt `virDomainMemoryStats` tags and QEMU `stat-*` names.
    Balloon,
    /// Consumers no meminfo field counts (zram, socket buffers, DMA-buf, the ZFS ARC), by their
    /// row label.
    Consumer,
}

impl Kind {
    /// Every kind, in display order.
    pub const ALL: [Kind; 5] = [
        Kind::Meminfo,
        Kind::Ksm,
        Kind::Smaps,
        Kind::Balloon,
        Kind::Consumer,
    ];

    fn source_file(self) -> (&'static str, &'static str) {
        match self {
            Kind::Meminfo => (
                "meminfo.toml",
                include_str!("../data/glossary/meminfo.toml"),
            ),
            Kind::Ksm => ("ksm.toml", include_str!("../data/glossary/ksm.toml")),
            Kind::Smaps => ("smaps.toml", include_str!("../data/glossary/smaps.toml")),
            Kind::Balloon => (
                "balloon.toml",
                include_str!("../data/glossary/balloon.toml"),
            ),
            Kind::Consumer => (
                "consumers.toml",
                include_str!("../data/glossary/consumers.toml"),
            ),
        }
    }
}

/// Language of the explanatory text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese.
    Zh,
}

/// The unit a value is shown in by its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Unit {
    /// Kibibytes, printed as "kB" by the kernel (and as KiB by libvirt).
    #[serde(rename = "kB")]
    Kb,
    /// Bytes.
    #[serde(rename = "bytes")]
    Bytes,
    /// Pages of the base page size.
    #[serde(rename = "pages")]
    Pages,
    /// A plain count of events or objects.
    #[serde(rename = "count")]
    Count,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Milliseconds,
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
    /// Percent.
    #[serde(rename = "percent")]
    Percent,
    /// A setting (a number or word that selects a behaviour, not a quantity).
    #[serde(rename = "setting")]
    Setting,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unit::Kb => "kB",
            Unit::Bytes => "bytes",
            Unit::Pages => "pages",
            Unit::Count => "count",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Percent => "percent",
            Unit::Setting => "setting",
        })
    }
}

/// One glossary entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The key exactly as the source prints it (`Active(anon)`, `pages_sharing`, `stat-swap-in`).
    pub key: String,
    /// Kernel (or QEMU/libvirt) version that added it, where known.
    pub since: Option<String>,
    /// First version that no longer shows it, if it was removed.
    pub until: Option<String>,
    /// The unit the source shows the value in.
    pub unit: Unit,
    /// Build option or condition under which the key is shown at all, if any.
    pub shown_if: Option<String>,
    /// Where the value comes from: the kernel function or counter, or the upstream field.
    pub source: String,
    en: String,
    zh: String,
    overlaps_en: Option<String>,
    overlaps_zh: Option<String>,
}

impl Entry {
    /// What the key counts, for an operator.
    pub fn text(&self, lang: Lang) -> &str {
        match lang {
            Lang::En => &self.en,
            Lang::Zh => &self.zh,
        }
    }

    /// What it overlaps with or is part of, if that is worth saying.
    pub fn overlaps(&self, lang: Lang) -> Option<&str> {
        match lang {
            Lang::En => self.overlaps_en.as_deref(),
            Lang::Zh => self.overlaps_zh.as_deref(),
        }
    }
}

/// Why the embedded glossary data is unusable. Only a bad edit to the data files can cause it;
/// the tests load every file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlossaryError {
    /// A data file is not valid TOML or does not fit the entry schema.
    #[error("glossary data {file}: {message}")]
    Parse {
        /// The data file.
        file: &'static str,
        /// The parser's message (it carries line and column).
        message: String,
    },
    /// The same key appears twice in one file.
    #[error("glossary data {file}: key {key:?} appears more than once")]
    Duplicate {
        /// The data file.
        file: &'static str,
        /// The repeated key.
        key: String,
    },
    /// An entry lacks its text in one language.
    #[error("glossary data {file}: key {key:?} has an empty {field}")]
    Empty {
        /// The data file.
        file: &'static str,
        /// The entry's key.
        key: String,
        /// The empty field.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DataFile {
    entry: Vec<Entry>,
}

fn parse(kind: Kind) -> Result<Vec<Entry>, GlossaryError> {
    let (file, text) = kind.source_file();
    parse_text(file, text)
}

fn parse_text(file: &'static str, text: &str) -> Result<Vec<Entry>, GlossaryError> {
    let data: DataFile = toml::from_str(text).map_err(|e| GlossaryError::Parse {
        file,
        message: e.to_string(),
    })?;
    let mut seen = HashSet::new();
    for e in &data.entry {
        if !seen.insert(e.key.as_str()) {
            return Err(GlossaryError::Duplicate {
                file,
                key: e.key.clone(),
            });
        }
        let required = [
            ("key", e.key.as_str()),
            ("source", e.source.as_str()),
            ("en", e.en.as_str()),
            ("zh", e.zh.as_str()),
        ];
        let optional = [
            ("overlaps_en", e.overlaps_en.as_deref()),
            ("overlaps_zh", e.overlaps_zh.as_deref()),
        ];
        let empty = required
            .into_iter()
            .chain(optional.into_iter().filter_map(|(f, v)| v.map(|v| (f, v))))
            .find(|(_, v)| v.trim().is_empty());
        if let Some((field, _)) = empty {
            return Err(GlossaryError::Empty {
                file,
                key: e.key.clone(),
                field,
            });
        }
        if e.overlaps_en.is_some() != e.overlaps_zh.is_some() {
            let field = if e.overlaps_en.is_some() {
                "overlaps_zh"
            } else {
                "overlaps_en"
            };
            return Err(GlossaryError::Empty {
                file,
                key: e.key.clone(),
                field,
            });
        }
    }
    Ok(data.entry)
}

type Loaded = Result<Vec<Entry>, GlossaryError>;

fn loaded(kind: Kind) -> &'static Loaded {
    static MEMINFO: OnceLock<Loaded> = OnceLock::new();
    static KSM: OnceLock<Loaded> = OnceLock::new();
    static SMAPS: OnceLock<Loaded> = OnceLock::new();
    static BALLOON: OnceLock<Loaded> = OnceLock::new();
    static CONSUMER: OnceLock<Loaded> = OnceLock::new();
    let cell = match kind {
        Kind::Meminfo => &MEMINFO,
        Kind::Ksm => &KSM,
        Kind::Smaps => &SMAPS,
        Kind::Balloon => &BALLOON,
        Kind::Consumer => &CONSUMER,
    };
    cell.get_or_init(|| parse(kind))
}

/// Checks that the data for `kind` loads: valid TOML, no duplicate keys, no empty text.
pub fn check(kind: Kind) -> Result<(), GlossaryError> {
    loaded(kind).as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Every entry of one kind, in file order. Empty if the data failed [`check`].
pub fn entries(kind: Kind) -> &'static [Entry] {
    match loaded(kind) {
        Ok(v) => v,
        Err(_) => &[],
    }
}

/// The entry for `key` (exact match, as the source spells it), or `None` if memwarden does
/// not know the key.
pub fn lookup(kind: Kind, key: &str) -> Option<&'static Entry> {
    entries(kind).iter().find(|e| e.key == key)
}

#[cfg(test)]
mod tests;
