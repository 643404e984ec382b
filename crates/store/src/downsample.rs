//! Downsampling in JSON space: the mean of several samples, generically.
//!
//! Working on `serde_json::Value` rather than on `Sample` means every numeric field the model has
//! (or will have, or had when an old row was written) is averaged without this file knowing it.
//! Rules: the structure comes from the *last* sample (what the host looked like at the end of the
//! period; a process that exited during the minute is not resurrected); a number is the mean of
//! the numbers found at the same path in the samples that have one there; array elements are
//! matched by identity (`pid`, `uuid`, `key`, `name`, ... for objects, the leading string of a
//! `["name", value]` pair), else by position; strings, booleans and nulls come from the last.

use std::collections::HashMap;

use serde_json::{Number, Value};

/// Fields that identify an element of an array of objects (a process, a meminfo line, a VM, a
/// zone by node and name, a hugepage pool by node and size...).
const IDENTITY_FIELDS: &[&str] = &[
    "pid",
    "uuid",
    "key",
    "name",
    "caller",
    "cpu",
    "node",
    "page_size_bytes",
];

/// The mean of `samples` (each a serialized `Sample`); `None` when empty.
pub fn mean(samples: &[&Value]) -> Option<Value> {
    let last = samples.last()?;
    Some(merge(last, samples))
}

fn merge(last: &Value, all: &[&Value]) -> Value {
    match last {
        Value::Number(_) => mean_number(last, all),
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                let same: Vec<&Value> = all.iter().filter_map(|o| o.get(k)).collect();
                out.insert(k.clone(), merge(v, &same));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(merge_array(items, all)),
        _ => last.clone(),
    }
}

fn merge_array(items: &[Value], all: &[&Value]) -> Vec<Value> {
    let others: Vec<&Vec<Value>> = all.iter().filter_map(|v| v.as_array()).collect();
    let ids: Option<Vec<String>> = items.iter().map(identity).collect();
    match ids.filter(|ids| unique(ids)) {
        Some(ids) => {
            // Index every other array by identity once: O(n) per array, not O(n²).
            let indexed: Vec<HashMap<String, &Value>> = others
                .iter()
                .map(|arr| arr.iter().filter_map(|e| Some((identity(e)?, e))).collect())
                .collect();
            items
                .iter()
                .zip(&ids)
                .map(|(item, id)| {
                    let same: Vec<&Value> =
                        indexed.iter().filter_map(|m| m.get(id).copied()).collect();
                    merge(item, &same)
                })
                .collect()
        }
        None => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let same: Vec<&Value> = others
                    .iter()
                    .filter(|arr| arr.len() == items.len())
                    .filter_map(|arr| arr.get(i))
                    .collect();
                merge(item, &same)
            })
            .collect(),
    }
}

/// An element's identity: its identity fields for an object, its leading string for a
/// `["name", value]` pair; `None` when it has none (then arrays match by position).
fn identity(v: &Value) -> Option<String> {
    match v {
        Value::Object(map) => {
            let parts: Vec<String> = IDENTITY_FIELDS
                .iter()
                .filter_map(|f| map.get(*f).map(|x| format!("{f}={x}")))
                .collect();
            (!parts.is_empty()).then(|| parts.join(","))
        }
        Value::Array(pair) => pair.first()?.as_str().map(str::to_owned),
        _ => None,
    }
}

fn unique(ids: &[String]) -> bool {
    let mut seen = std::collections::HashSet::with_capacity(ids.len());
    ids.iter().all(|id| seen.insert(id))
}

/// The mean of the numbers in `all`, in the last one's type: integers stay integers (a u64
/// field must still deserialize), computed exactly in 128 bits so that byte counts near 2^64
/// (QEMU's "unset" sentinel) survive.
fn mean_number(last: &Value, all: &[&Value]) -> Value {
    let nums: Vec<&Number> = all.iter().filter_map(|v| v.as_number()).collect();
    if nums.is_empty() || nums.iter().all(|n| Some(*n) == last.as_number()) {
        return last.clone();
    }
    let n = nums.len() as i128;
    if last.is_u64() || last.is_i64() {
        let ints: Option<Vec<i128>> = nums
            .iter()
            .map(|x| x.as_u64().map(i128::from).or(x.as_i64().map(i128::from)))
            .collect();
        if let Some(ints) = ints {
            let sum: i128 = ints.iter().sum();
            // Round half away from zero.
            let m = if sum >= 0 {
                (sum + n / 2) / n
            } else {
                (sum - n / 2) / n
            };
            if let Ok(u) = u64::try_from(m) {
                return Value::from(u);
            }
            if let Ok(i) = i64::try_from(m) {
                return Value::from(i);
            }
        }
    }
    let sum: f64 = nums.iter().filter_map(|x| x.as_f64()).sum();
    Number::from_f64(sum / nums.len() as f64).map_or_else(|| last.clone(), Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_averaged_structure_from_last() {
        let a = json!({"t": 0, "x": 10, "f": 1.0, "s": "old", "o": 5});
        let b = json!({"t": 10, "x": 21, "f": 2.0, "s": "new", "o": null});
        let m = mean(&[&a, &b]).expect("non-empty");
        assert_eq!(m, json!({"t": 5, "x": 16, "f": 1.5, "s": "new", "o": null}));
    }

    #[test]
    fn arrays_matched_by_identity_not_position() {
        let a = json!({"p": [{"pid": 1, "rss": 100}, {"pid": 2, "rss": 10}],
                        "v": [["a", 1], ["b", 3]]});
        let b = json!({"p": [{"pid": 2, "rss": 30}, {"pid": 1, "rss": 300}, {"pid": 3, "rss": 7}],
                        "v": [["b", 5], ["a", 3]]});
        let m = mean(&[&a, &b]).expect("non-empty");
        assert_eq!(
            m,
            json!({"p": [{"pid": 2, "rss": 20}, {"pid": 1, "rss": 200}, {"pid": 3, "rss": 7}],
                   "v": [["b", 4], ["a", 2]]})
        );
    }

    #[test]
    fn sentinels_and_constants_are_exact() {
        let unset = u64::MAX / 1024;
        let a = json!({"v": unset, "m": u64::MAX, "big": u64::MAX - 10});
        let b = json!({"v": unset, "m": u64::MAX, "big": u64::MAX});
        let m = mean(&[&a, &b, &a]).expect("non-empty");
        assert_eq!(m["v"], json!(unset));
        assert_eq!(m["m"], json!(u64::MAX));
        assert_eq!(m["big"], json!(u64::MAX - 7));
    }

    #[test]
    fn negative_integers_round_and_stay_integers() {
        let a = json!({"p": -3});
        let b = json!({"p": -4});
        assert_eq!(mean(&[&a, &b]).expect("non-empty"), json!({"p": -4}));
    }
}
