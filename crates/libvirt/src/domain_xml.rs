//! A libvirt domain XML, parsed (roxmltree) into the plain facts memwarden uses: identity,
//! memory sizes (every `unit=` honoured, KiB inside), the `<memballoon>` device, `<memtune>`
//! limits, `<memoryBacking>`, the guest OS from libosinfo metadata and OpenStack Nova's
//! instance metadata. Pure: `&str` in, [`DomainXml`] out; no libvirt call.
//!
//! Sizes follow libvirt's own scaling (`virScaleInteger`): no unit = KiB; `b`/`bytes`; `k`,
//! `KiB`, `M`, `MiB`, `G`, `GiB`, `T`, `TiB`, `P`, `PiB`, `E`, `EiB` are powers of 1024;
//! `KB`, `MB`, `GB`, `TB`, `PB`, `EB` powers of 1000; case-insensitive. A byte count that
//! is not a whole KiB rounds up, as libvirt does.

use roxmltree::{Document, Node};

/// libosinfo's metadata namespace.
const LIBOSINFO_NS: &str = "http://libosinfo.org/xmlns/libvirt/domain/1.0";
/// Nova's metadata namespaces start with this (`.../nova/1.0`, `.../nova/1.1`).
const NOVA_NS_PREFIX: &str = "http://openstack.org/xmlns/libvirt/nova/";

/// The memory facts of one domain. Sizes in KiB (`_kib`), converted from any `unit=`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainXml {
    pub name: Option<String>,
    pub uuid: Option<String>,
    /// `<memory>`: the boot-time maximum (libvirt's "max memory" without hotplug).
    pub memory_kib: Option<u64>,
    /// `<currentMemory>`: the balloon target libvirt was last given.
    pub current_memory_kib: Option<u64>,
    /// `<maxMemory slots=...>`: the ceiling with memory hotplug.
    pub max_memory_kib: Option<u64>,
    pub balloon: Balloon,
    /// `<memtune><min_guarantee>` (not supported by the QEMU driver; other hypervisors).
    pub min_guarantee_kib: Option<u64>,
    /// `<memtune><hard_limit>`: the cgroup memory limit of the QEMU process.
    pub hard_limit_kib: Option<u64>,
    /// `<memtune><soft_limit>`: the cgroup soft limit, enforced under host contention.
    pub soft_limit_kib: Option<u64>,
    /// `<memoryBacking><hugepages/>`: guest RAM on hugetlbfs (balloon cannot free it).
    pub hugepages: bool,
    /// `<memoryBacking><locked/>`: guest RAM mlocked (never swapped).
    pub locked: bool,
    /// `windows` or `linux` from libosinfo's `<libosinfo:os id=...>`.
    pub guest_os: Option<String>,
    /// `<metadata><nova:instance>` when OpenStack Nova created the domain.
    pub nova: Option<NovaInstance>,
}

/// The `<memballoon>` device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Balloon {
    /// A balloon exists: the element is there and its model is not `none`.
    pub present: bool,
    /// `model=` (`virtio`, `virtio-transitional`, `xen`, `none`...).
    pub model: Option<String>,
    /// `<alias name=...>` (live XML only), e.g. `balloon0`.
    pub alias: Option<String>,
    /// `<stats period=...>` in seconds; 0 when the balloon is present without `<stats>`;
    /// `None` without a balloon.
    pub stats_period_s: Option<u64>,
    /// `autodeflate=` (QEMU's deflate-on-oom), when written.
    pub autodeflate: Option<bool>,
    /// `freePageReporting=`, when written.
    pub free_page_reporting: Option<bool>,
}

/// What Nova records about the instance (`nova/virt/libvirt/config.py`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NovaInstance {
    /// The namespace version seen (`1.0`, `1.1`).
    pub version: String,
    /// `<nova:name>`: the instance's display name.
    pub name: Option<String>,
    pub flavor_name: Option<String>,
    /// `<nova:flavor><nova:memory>`: the flavor's RAM in MiB (Nova calls it MB).
    pub flavor_memory_mib: Option<u64>,
    pub project_name: Option<String>,
    pub project_uuid: Option<String>,
    pub user_name: Option<String>,
    pub user_uuid: Option<String>,
    /// `<nova:creationTime>` as written (`2026-11-20 09:14:03`, UTC).
    pub creation_time: Option<String>,
}

/// Why a domain XML could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DomainXmlError {
    #[error("domain XML is not well-formed: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("expected a <domain> root element, found <{0}>")]
    NotADomain(String),
    #[error("<{element}>: {value:?} is not a size")]
    BadNumber { element: String, value: String },
    #[error(
        "<{element}>: unknown unit {unit:?} (libvirt accepts b, KiB, KB, MiB, MB, GiB, GB, ...)"
    )]
    BadUnit { element: String, unit: String },
    #[error("<{element}>: {value} {unit} overflows 64 bits of bytes")]
    Overflow {
        element: String,
        value: u64,
        unit: String,
    },
}

/// Parses a domain XML as `virsh dumpxml` (live or `--inactive`) or a hand-written one gives it.
pub fn parse(xml: &str) -> Result<DomainXml, DomainXmlError> {
    let doc = Document::parse(xml)?;
    let root = doc.root_element();
    if root.tag_name().name() != "domain" {
        return Err(DomainXmlError::NotADomain(
            root.tag_name().name().to_string(),
        ));
    }
    let memtune = child(root, "memtune");
    let backing = child(root, "memoryBacking");
    let metadata = child(root, "metadata");
    Ok(DomainXml {
        name: child(root, "name").and_then(text),
        uuid: child(root, "uuid").and_then(text),
        memory_kib: size_kib(child(root, "memory"))?,
        current_memory_kib: size_kib(child(root, "currentMemory"))?,
        max_memory_kib: size_kib(child(root, "maxMemory"))?,
        balloon: balloon(child(root, "devices").and_then(|d| child(d, "memballoon"))),
        min_guarantee_kib: size_kib(memtune.and_then(|m| child(m, "min_guarantee")))?,
        hard_limit_kib: size_kib(memtune.and_then(|m| child(m, "hard_limit")))?,
        soft_limit_kib: size_kib(memtune.and_then(|m| child(m, "soft_limit")))?,
        hugepages: backing.and_then(|b| child(b, "hugepages")).is_some(),
        locked: backing.and_then(|b| child(b, "locked")).is_some(),
        guest_os: metadata.and_then(guest_os),
        nova: metadata.and_then(nova),
    })
}

/// The first child element named `name` in no namespace (libvirt's own elements).
fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace().is_none()
    })
}

/// The first child element `name` in namespace `ns`.
fn child_ns<'a, 'i>(n: Node<'a, 'i>, ns: &str, name: &str) -> Option<Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().name() == name && c.tag_name().namespace() == Some(ns)
    })
}

fn text(n: Node) -> Option<String> {
    n.text()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

fn on_off(v: Option<&str>) -> Option<bool> {
    match v? {
        "on" | "yes" => Some(true),
        "off" | "no" => Some(false),
        _ => None,
    }
}

fn balloon(n: Option<Node>) -> Balloon {
    // libvirt adds a virtio balloon to x86 domains unless told model='none', and writes it
    // out: a domain XML without the element has none.
    let Some(n) = n else {
        return Balloon::default();
    };
    let model = n.attribute("model").map(str::to_string);
    let present = model.as_deref() != Some("none");
    Balloon {
        present,
        stats_period_s: present.then(|| {
            child(n, "stats")
                .and_then(|s| s.attribute("period"))
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or(0)
        }),
        alias: child(n, "alias")
            .and_then(|a| a.attribute("name"))
            .map(str::to_string),
        autodeflate: on_off(n.attribute("autodeflate")),
        free_page_reporting: on_off(n.attribute("freePageReporting")),
        model,
    }
}

/// `<x unit='...'>N</x>` in KiB; `None` when the element is absent.
fn size_kib(n: Option<Node>) -> Result<Option<u64>, DomainXmlError> {
    let Some(n) = n else { return Ok(None) };
    let element = n.tag_name().name().to_string();
    let raw = n.text().unwrap_or("").trim();
    let value: u64 = raw.parse().map_err(|_| DomainXmlError::BadNumber {
        element: element.clone(),
        value: raw.to_string(),
    })?;
    let unit = n.attribute("unit").unwrap_or("").trim();
    let scale = unit_bytes(unit).ok_or_else(|| DomainXmlError::BadUnit {
        element: element.clone(),
        unit: unit.to_string(),
    })?;
    let bytes = value
        .checked_mul(scale)
        .ok_or_else(|| DomainXmlError::Overflow {
            element,
            value,
            unit: unit.to_string(),
        })?;
    Ok(Some(bytes.div_ceil(1024)))
}

/// Bytes per unit, as libvirt's `virScaleInteger` reads a unit (empty = KiB).
fn unit_bytes(unit: &str) -> Option<u64> {
    let u = unit.to_ascii_lowercase();
    if u.is_empty() {
        return Some(1024);
    }
    if matches!(u.as_str(), "b" | "byte" | "bytes") {
        return Some(1);
    }
    let mut chars = u.chars();
    let power = match chars.next()? {
        'k' => 1,
        'm' => 2,
        'g' => 3,
        't' => 4,
        'p' => 5,
        'e' => 6,
        _ => return None,
    };
    let base: u64 = match chars.as_str() {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    base.checked_pow(power)
}

/// `linux`/`windows` from `<libosinfo:os id="http://microsoft.com/win/10"/>`.
fn guest_os(metadata: Node) -> Option<String> {
    let os = child_ns(metadata, LIBOSINFO_NS, "libosinfo")
        .and_then(|l| child_ns(l, LIBOSINFO_NS, "os"))?;
    let id = os.attribute("id")?;
    Some(if id.contains("microsoft.com/win") {
        "windows".to_string()
    } else {
        "linux".to_string()
    })
}

fn nova(metadata: Node) -> Option<NovaInstance> {
    let inst = metadata.children().find(|c| {
        c.is_element()
            && c.tag_name().name() == "instance"
            && c.tag_name()
                .namespace()
                .is_some_and(|ns| ns.starts_with(NOVA_NS_PREFIX))
    })?;
    let ns = inst.tag_name().namespace()?;
    let flavor = child_ns(inst, ns, "flavor");
    let owner = child_ns(inst, ns, "owner");
    let user = owner.and_then(|o| child_ns(o, ns, "user"));
    let project = owner.and_then(|o| child_ns(o, ns, "project"));
    Some(NovaInstance {
        version: ns[NOVA_NS_PREFIX.len()..].trim_end_matches('/').to_string(),
        name: child_ns(inst, ns, "name").and_then(text),
        flavor_name: flavor.and_then(|f| f.attribute("name")).map(str::to_string),
        flavor_memory_mib: flavor
            .and_then(|f| child_ns(f, ns, "memory"))
            .and_then(text)
            .and_then(|m| m.parse().ok()),
        project_name: project.and_then(text),
        project_uuid: project
            .and_then(|p| p.attribute("uuid"))
            .map(str::to_string),
        user_name: user.and_then(text),
        user_uuid: user.and_then(|u| u.attribute("uuid")).map(str::to_string),
        creation_time: child_ns(inst, ns, "creationTime").and_then(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024; // in KiB

    fn fixture(name: &str) -> DomainXml {
        let path = format!(
            "{}/../hv/tests/data/domain-xml/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let xml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        parse(&xml).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn lab_virtio_running() {
        let d = fixture("lab-virtio-running.xml");
        assert_eq!(d.name.as_deref(), Some("mwlab-simv"));
        assert_eq!(
            d.uuid.as_deref(),
            Some("411e1708-9e58-4358-9eda-8c934593a7a8")
        );
        assert_eq!(d.memory_kib, Some(512 * MIB));
        assert_eq!(d.current_memory_kib, Some(512 * MIB));
        assert_eq!(d.max_memory_kib, None);
        assert_eq!(
            d.balloon,
            Balloon {
                present: true,
                model: Some("virtio".into()),
                alias: Some("balloon0".into()),
                stats_period_s: Some(10),
                autodeflate: None,
                free_page_reporting: None,
            }
        );
        assert_eq!(
            (d.hard_limit_kib, d.soft_limit_kib, d.min_guarantee_kib),
            (None, None, None)
        );
        assert!(!d.hugepages && !d.locked);
        assert_eq!(d.guest_os, None);
        assert_eq!(d.nova, None);
    }

    #[test]
    fn lab_none_running() {
        let d = fixture("lab-none-running.xml");
        assert_eq!(d.name.as_deref(), Some("mwlab-simn"));
        assert!(!d.balloon.present);
        assert_eq!(d.balloon.model.as_deref(), Some("none"));
        assert_eq!(d.balloon.stats_period_s, None);
        assert_eq!(d.balloon.alias, None);
        assert_eq!(d.memory_kib, Some(512 * MIB));
    }

    #[test]
    fn lab_tuned_running() {
        let d = fixture("lab-tuned-running.xml");
        assert_eq!(d.balloon.autodeflate, Some(true));
        assert_eq!(d.balloon.free_page_reporting, Some(true));
        assert_eq!(d.balloon.stats_period_s, Some(10));
        assert_eq!(d.balloon.alias.as_deref(), Some("balloon0"));
        assert_eq!(d.soft_limit_kib, Some(768 * MIB));
        assert_eq!(d.hard_limit_kib, None);
        assert!(!d.hugepages && !d.locked, "nosharepages is neither");
        assert_eq!(d.guest_os.as_deref(), Some("linux"));
    }

    #[test]
    fn lab_full_inactive() {
        let d = fixture("lab-full-inactive.xml");
        assert_eq!(d.max_memory_kib, Some(4096 * MIB));
        assert_eq!(d.memory_kib, Some(512 * MIB));
        assert_eq!(d.hard_limit_kib, Some(2048 * MIB));
        assert_eq!(d.soft_limit_kib, Some(768 * MIB));
        assert!(d.hugepages && d.locked);
        assert!(d.balloon.present);
        assert_eq!(d.balloon.alias, None, "inactive XML has no aliases");
        assert_eq!(d.balloon.autodeflate, Some(true));
    }

    #[test]
    fn units_and_min_guarantee() {
        let d = fixture("units-min-guarantee.xml");
        assert_eq!(d.max_memory_kib, Some(64 * 1024 * MIB));
        assert_eq!(d.memory_kib, Some(8 * 1024 * MIB));
        assert_eq!(d.current_memory_kib, Some(5_859_375)); // 6,000 MB
        assert_eq!(d.hard_limit_kib, Some(1024 * 1024 * MIB));
        assert_eq!(d.soft_limit_kib, Some(1024 * MIB));
        assert_eq!(d.min_guarantee_kib, Some(512 * MIB));
        assert!(d.hugepages && !d.locked);
        assert_eq!(d.balloon.autodeflate, Some(false));
        assert_eq!(d.balloon.free_page_reporting, Some(false));
        assert_eq!(d.balloon.stats_period_s, Some(0), "no <stats>: polling off");
        assert_eq!(d.balloon.alias.as_deref(), Some("ua-balloon"));
        assert_eq!(d.guest_os.as_deref(), Some("windows"));
    }

    #[test]
    fn nova_instance() {
        let d = fixture("nova-instance.xml");
        assert_eq!(d.name.as_deref(), Some("instance-0000002a"));
        assert_eq!(d.memory_kib, Some(4096 * MIB));
        assert_eq!(d.balloon.stats_period_s, Some(10));
        assert_eq!(
            d.nova,
            Some(NovaInstance {
                version: "1.1".into(),
                name: Some("web-frontend-1".into()),
                flavor_name: Some("m1.medium".into()),
                flavor_memory_mib: Some(4096),
                project_name: Some("web-team".into()),
                project_uuid: Some("3e7b9c1d2f4a4b6c8d0e1f2a3b4c5d6e".into()),
                user_name: Some("alice".into()),
                user_uuid: Some("8c1f2e0d4b5a4f6e9d7c3b2a1f0e9d8c".into()),
                creation_time: Some("2026-11-20 09:14:03".into()),
            })
        );
    }

    #[test]
    fn unit_spellings() {
        for (u, b) in [
            ("", 1024),
            ("b", 1),
            ("bytes", 1),
            ("k", 1024),
            ("KiB", 1024),
            ("KB", 1000),
            ("M", 1 << 20),
            ("mib", 1 << 20),
            ("MB", 1_000_000),
            ("GiB", 1 << 30),
            ("GB", 1_000_000_000),
            ("T", 1 << 40),
            ("EiB", 1 << 60),
        ] {
            assert_eq!(unit_bytes(u), Some(b), "{u:?}");
        }
        let odd = parse("<domain><memory unit='b'>1025</memory></domain>").expect("parse");
        assert_eq!(
            odd.memory_kib,
            Some(2),
            "rounded up to whole KiB, as libvirt does"
        );
        for u in ["x", "KiBB", "Kb2", "Z"] {
            assert_eq!(unit_bytes(u), None, "{u:?}");
        }
    }

    #[test]
    fn bad_input_is_an_error_not_a_guess() {
        assert!(matches!(parse("<domain"), Err(DomainXmlError::Xml(_))));
        assert!(matches!(
            parse("<network/>"),
            Err(DomainXmlError::NotADomain(n)) if n == "network"
        ));
        assert!(matches!(
            parse("<domain><memory unit='KiB'>lots</memory></domain>"),
            Err(DomainXmlError::BadNumber { .. })
        ));
        assert!(matches!(
            parse("<domain><memory unit='parsecs'>1</memory></domain>"),
            Err(DomainXmlError::BadUnit { .. })
        ));
        assert!(matches!(
            parse("<domain><memory unit='EiB'>100</memory></domain>"),
            Err(DomainXmlError::Overflow { .. })
        ));
        let e = parse("<domain><memory unit='parsecs'>1</memory></domain>")
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("<memory>") && e.contains("parsecs")));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_any_string(s in ".{0,300}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_domain_like_xml(
            unit in "[a-zA-Z]{0,4}",
            value in "[0-9]{0,25}",
            period in "[0-9-]{0,22}",
            model in "[a-z]{0,8}",
        ) {
            let xml = format!(
                "<domain><memory unit='{unit}'>{value}</memory><devices>\
                 <memballoon model='{model}'><stats period='{period}'/></memballoon>\
                 </devices></domain>"
            );
            if let Ok(d) = parse(&xml) {
                prop_assert_eq!(d.balloon.present, model != "none");
                prop_assert!(d.memory_kib.is_some());
            }
        }
    }
}
