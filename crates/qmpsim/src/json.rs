//! JSON written the way QEMU writes it: keys in the order given (QEMU's replies are not
//! sorted: `{"return": ..., "id": 1}` but `{"id": 1, "error": ...}`), `": "` and `", "`
//! separators, one message per line.

use serde_json::Value;

/// An ordered JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Q {
    Obj(Vec<(String, Q)>),
    Arr(Vec<Q>),
    Str(String),
    U(u64),
    I(i64),
    F(f64),
    B(bool),
    Null,
}

/// `{"k": v, ...}` from pairs, in order.
pub(crate) fn obj<const N: usize>(pairs: [(&str, Q); N]) -> Q {
    Q::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

pub(crate) fn s(v: impl Into<String>) -> Q {
    Q::Str(v.into())
}

impl Q {
    /// A request's `id` (any JSON) echoed back.
    pub(crate) fn from_value(v: &Value) -> Q {
        match v {
            Value::Null => Q::Null,
            Value::Bool(b) => Q::B(*b),
            Value::Number(n) => n
                .as_u64()
                .map(Q::U)
                .or_else(|| n.as_i64().map(Q::I))
                .unwrap_or_else(|| Q::F(n.as_f64().unwrap_or(0.0))),
            Value::String(t) => Q::Str(t.clone()),
            Value::Array(a) => Q::Arr(a.iter().map(Q::from_value).collect()),
            Value::Object(m) => Q::Obj(
                m.iter()
                    .map(|(k, v)| (k.clone(), Q::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// One line, without the newline.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Q::Obj(pairs) => {
                out.push('{');
                for (i, (k, v)) in pairs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    string(k, out);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
            Q::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Q::Str(t) => string(t, out),
            Q::U(n) => out.push_str(&n.to_string()),
            Q::I(n) => out.push_str(&n.to_string()),
            Q::F(n) => out.push_str(&n.to_string()),
            Q::B(b) => out.push_str(if *b { "true" } else { "false" }),
            Q::Null => out.push_str("null"),
        }
    }
}

fn string(t: &str, out: &mut String) {
    // serde_json's escaping of a plain string cannot fail.
    out.push_str(&serde_json::to_string(t).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_like_qemu() {
        let v = obj([
            ("return", obj([("actual", Q::U(536870912))])),
            ("id", Q::Str("a\"b".into())),
        ]);
        assert_eq!(
            v.render(),
            r#"{"return": {"actual": 536870912}, "id": "a\"b"}"#
        );
        let a = Q::Arr(vec![Q::B(true), Q::Null, Q::I(-1)]);
        assert_eq!(a.render(), "[true, null, -1]");
        assert_eq!(
            Q::from_value(&serde_json::json!({"x": [1, -2, 0.5]})).render(),
            r#"{"x": [1, -2, 0.5]}"#
        );
    }
}
