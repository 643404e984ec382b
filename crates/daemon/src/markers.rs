//! The balloon controller's actions and the harm it saw, over time: what the page marks on each
//! VM's chart. Read from the store's `balloon` events (one per cycle that acted, measured, saw
//! harm or left a VM alone for a new reason: see [`crate::balloon`]) and flattened to one small
//! record per action or harm, newest kept when there are more than asked for.

use serde::{Deserialize, Serialize};

/// One action (planned or applied) or one harm seen, at the cycle's time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Marker {
    pub at_unix_ms: u64,
    /// The VM's name.
    pub name: String,
    /// `grow`, `shrink` or `harm`.
    pub kind: String,
    /// An action's balloon size before and its target; a harm's balloon size when seen.
    pub from_bytes: Option<u64>,
    pub target_bytes: Option<u64>,
    /// An action: `applied`, `gone`, `refused` or `planned` (a dry run, or not applied);
    /// a harm: its kind (`oom_kill`, ...).
    pub outcome: String,
    /// The action's reason, the harm's detail; the hypervisor's error after a refusal.
    pub reason: String,
}

/// The parts of a stored cycle read here; everything else in it is ignored.
#[derive(Deserialize)]
struct Cycle {
    plan: Plan,
    #[serde(default)]
    applied: Vec<Applied>,
}

#[derive(Deserialize)]
struct Plan {
    #[serde(default)]
    actions: Vec<Action>,
    #[serde(default)]
    harm: Vec<Harm>,
}

#[derive(Deserialize, PartialEq)]
struct Action {
    name: String,
    from_bytes: u64,
    target_bytes: u64,
    direction: String,
    reason: String,
}

#[derive(Deserialize)]
struct Applied {
    action: Action,
    outcome: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Harm {
    name: String,
    kind: String,
    detail: String,
    actual_bytes: Option<u64>,
}

/// The markers of `events` (the store's `balloon` events, oldest first), of VM `vm` only when
/// given; at most `limit`, the newest. Whether some were left out.
pub fn markers(
    events: &[(u64, serde_json::Value)],
    vm: Option<&str>,
    limit: usize,
) -> (Vec<Marker>, bool) {
    let mut out = Vec::new();
    for (at, data) in events {
        // A cycle this version cannot read (an older or newer shape) marks nothing.
        let Ok(c) = Cycle::deserialize(data) else {
            continue;
        };
        for a in c.plan.actions {
            let applied = c.applied.iter().find(|x| x.action == a);
            let (outcome, reason) = match applied {
                Some(x) => (
                    x.outcome.clone(),
                    match &x.error {
                        Some(e) => format!("{}: {e}", a.reason),
                        None => a.reason.clone(),
                    },
                ),
                None => ("planned".to_string(), a.reason.clone()),
            };
            out.push(Marker {
                at_unix_ms: *at,
                name: a.name,
                kind: a.direction,
                from_bytes: Some(a.from_bytes),
                target_bytes: Some(a.target_bytes),
                outcome,
                reason,
            });
        }
        for h in c.plan.harm {
            out.push(Marker {
                at_unix_ms: *at,
                name: h.name,
                kind: "harm".into(),
                from_bytes: h.actual_bytes,
                target_bytes: None,
                outcome: h.kind,
                reason: h.detail,
            });
        }
    }
    out.retain(|m| vm.is_none_or(|v| m.name == v));
    let cut = out.len().saturating_sub(limit);
    out.drain(..cut);
    (out, cut > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn action(vm: &str, from: u64, to: u64, dir: &str) -> serde_json::Value {
        json!({"name": vm, "uuid": null, "from_bytes": from, "target_bytes": to,
               "direction": dir, "reason": format!("{vm} {dir}"),
               "expected_host_gain_bytes": 0, "host_rss_bytes": null})
    }

    fn cycle(
        actions: Vec<serde_json::Value>,
        applied: Vec<serde_json::Value>,
    ) -> serde_json::Value {
        json!({"controller": "memwarden", "dry_run": applied.is_empty(),
               "plan": {"taken_at_unix_ms": 1, "actions": actions, "skipped": [],
                        "host": {}, "measured": [], "unmet_need_bytes": 0,
                        "harm": [{"name": "b", "uuid": null, "kind": "oom_kill",
                                  "detail": "the guest killed a process", "before": null,
                                  "actual_bytes": 512, "max_bytes": 1024,
                                  "margin_after_bytes": 0}]},
               "applied": applied})
    }

    #[test]
    fn actions_carry_their_outcome_and_harm_its_kind() {
        let shrink = action("a", 1024, 768, "shrink");
        let grow = action("b", 512, 1024, "grow");
        let events = vec![
            (10, cycle(vec![shrink.clone()], vec![])),
            (
                20,
                cycle(
                    vec![shrink.clone(), grow.clone()],
                    vec![
                        json!({"action": shrink, "outcome": "applied"}),
                        json!({"action": grow, "outcome": "refused", "error": "no balloon"}),
                    ],
                ),
            ),
            (30, json!({"not": "a cycle"})),
        ];
        let (all, cut) = markers(&events, None, 100);
        assert!(!cut);
        let seen: Vec<(u64, &str, &str, &str)> = all
            .iter()
            .map(|m| {
                (
                    m.at_unix_ms,
                    m.name.as_str(),
                    m.kind.as_str(),
                    m.outcome.as_str(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (10, "a", "shrink", "planned"),
                (10, "b", "harm", "oom_kill"),
                (20, "a", "shrink", "applied"),
                (20, "b", "grow", "refused"),
                (20, "b", "harm", "oom_kill"),
            ]
        );
        assert_eq!(all[3].reason, "b grow: no balloon");
        assert_eq!(
            (all[2].from_bytes, all[2].target_bytes),
            (Some(1024), Some(768))
        );

        let (b, cut) = markers(&events, Some("b"), 2);
        assert!(cut, "three markers of b, two asked for");
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|m| m.name == "b" && m.at_unix_ms == 20));
    }
}
