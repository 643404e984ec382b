//! What a domain's XML says that a sample needs (the balloon device, limits, Nova metadata),
//! read once per domain and cached: again when the domain's id changes or after
//! [`XML_REFRESH`].

use std::time::{Duration, Instant};

use memwarden_model::units::KIB;
use memwarden_model::vm::{BalloonDevice, NovaInstance, VmConfig};

use memwarden_libvirt::domain_xml;

/// How long a domain's XML facts are trusted before they are read again.
pub const XML_REFRESH: Duration = Duration::from_secs(60);

/// What the domain XML says, cached per domain.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub(super) id: Option<u32>,
    pub(super) read_at: Instant,
    pub(super) device: BalloonDevice,
    pub(super) guest_os: Option<String>,
    pub(super) config: VmConfig,
    pub(super) pid: Option<u32>,
}

/// The model's view of what the domain XML says.
pub(super) fn facts_from(x: &domain_xml::DomainXml, id: Option<u32>, pid: Option<u32>) -> Facts {
    let b = &x.balloon;
    let bytes = |kib: Option<u64>| kib.and_then(|k| k.checked_mul(KIB));
    Facts {
        id,
        read_at: Instant::now(),
        device: BalloonDevice {
            present: b.present,
            path: b.alias.clone(),
            stats_period_s: b.stats_period_s,
            model: b.model.clone(),
            autodeflate: b.autodeflate,
            free_page_reporting: b.free_page_reporting,
        },
        guest_os: x.guest_os.clone(),
        config: VmConfig {
            min_guarantee_bytes: bytes(x.min_guarantee_kib),
            hard_limit_bytes: bytes(x.hard_limit_kib),
            soft_limit_bytes: bytes(x.soft_limit_kib),
            hugepages: x.hugepages,
            locked: x.locked,
            nova: x.nova.as_ref().map(|n| NovaInstance {
                name: n.name.clone(),
                flavor: n.flavor_name.clone(),
                project: n.project_name.clone(),
                project_uuid: n.project_uuid.clone(),
                user: n.user_name.clone(),
                user_uuid: n.user_uuid.clone(),
                creation_time: n.creation_time.clone(),
            }),
        },
        pid,
    }
}
