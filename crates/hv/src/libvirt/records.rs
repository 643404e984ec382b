//! What the bulk call's records say: each domain's typed parameters read into balloon tags,
//! max memory and state (pure, so that the fuzz target feeds it decoded replies), and the
//! newer statistics a monitor passthrough reply adds.

use serde_json::Value;

use memwarden_model::units::KIB;
use memwarden_model::vm::{ExtraStats, StatTag, TagUnit, VmSample, VmState};

use crate::qmp::parse_guest_stats;
use crate::tags;
use memwarden_libvirt::{self as libvirt_conn, sys, Domain, Param};

/// One domain from the bulk call: libvirt-form tags (bulk order), max memory, state, and
/// whether libvirt skipped its statistics because another job holds the domain.
#[derive(Debug, Clone)]
pub struct BulkRecord {
    pub name: String,
    pub uuid: Option<String>,
    pub tags: Vec<StatTag>,
    pub max_memory_bytes: Option<u64>,
    pub state: VmState,
    /// With NOWAIT, a domain whose job could not be taken at once gets only what needs no
    /// monitor (`balloon.current`, `balloon.maximum`): no `balloon.rss`, which libvirt adds to
    /// every running domain it did query, balloon device or not.
    pub busy: bool,
    pub domain: Domain,
}

/// What one domain's typed parameters from the bulk call say, before the domain is named: its
/// balloon tags (bulk order), max memory, state, and whether libvirt queried its monitor
/// (`balloon.rss` present). Pure, so that the fuzz target can feed it decoded replies.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkFields {
    pub tags: Vec<StatTag>,
    pub max_memory_bytes: Option<u64>,
    pub state: VmState,
    pub queried: bool,
}

/// [`BulkFields`] from one domain's typed parameters.
pub fn bulk_fields(params: &[(String, Param)]) -> BulkFields {
    let mut tags_ = Vec::new();
    let mut max = None;
    let mut state = VmState::Unknown;
    let mut queried = false;
    for (field, value) in params {
        let v = match value {
            Param::Uint(v) => *v,
            Param::Int(i) => *i as u64,
            _ => continue,
        };
        if field == "balloon.rss" {
            queried = true;
        }
        if field == "balloon.maximum" {
            max = v.checked_mul(KIB);
        } else if field == "state.state" {
            state = state_from(v);
        } else if let Some(t) = tags::bulk_field_tag(field) {
            tags_.push(StatTag {
                name: t.to_string(),
                value: v,
                unit: tags::unit_of(t),
            });
        } else if let Some(rest) = field.strip_prefix("balloon.") {
            // A balloon field this libvirt knows and we do not: keep it.
            tags_.push(StatTag {
                name: rest.to_string(),
                value: v,
                unit: TagUnit::Raw,
            });
        }
    }
    BulkFields {
        tags: tags_,
        max_memory_bytes: max,
        state,
        queried,
    }
}

pub(super) fn parse_record(r: &libvirt_conn::Record) -> Option<BulkRecord> {
    let name = r.domain.name().ok()?;
    let f = bulk_fields(&r.params);
    Some(BulkRecord {
        name,
        uuid: r.domain.uuid_string().ok(),
        tags: f.tags,
        max_memory_bytes: f.max_memory_bytes,
        busy: !f.queried && f.state == VmState::Running,
        state: f.state,
        domain: r.domain.clone(),
    })
}

/// Appends the newer stats from a monitor `qom-get guest-stats` reply to the VM's tags. Public
/// for the libvirt RPC fuzz target (the monitor reply is bytes from QEMU through libvirtd).
pub fn merge_extra(vm: &mut VmSample, reply: &str) -> ExtraStats {
    let Some(ret) = serde_json::from_str::<Value>(reply)
        .ok()
        .and_then(|v| v.get("return").cloned())
    else {
        return ExtraStats::Unavailable(format!(
            "unexpected monitor reply: {}",
            crate::qmp::quote(reply)
        ));
    };
    let (raw, _) = parse_guest_stats(&ret);
    let extra: Vec<(String, u64)> = raw
        .into_iter()
        .filter(|(k, _)| !tags::QMP_STATS.iter().any(|(q, _, _)| q == k))
        .collect();
    let mut all = std::mem::take(&mut vm.balloon.tags);
    all.extend(tags::qmp_to_tags(None, &extra, None, None));
    vm.balloon = tags::balloon_from_tags(all);
    ExtraStats::Read
}
pub(super) fn state_from(v: u64) -> VmState {
    match v as u32 {
        sys::VIR_DOMAIN_RUNNING => VmState::Running,
        sys::VIR_DOMAIN_PAUSED => VmState::Paused,
        sys::VIR_DOMAIN_SHUTOFF | sys::VIR_DOMAIN_SHUTDOWN => VmState::Shutoff,
        sys::VIR_DOMAIN_CRASHED => VmState::Crashed,
        sys::VIR_DOMAIN_PMSUSPENDED => VmState::Suspended,
        o => VmState::Other(format!("libvirt state {o}")),
    }
}
