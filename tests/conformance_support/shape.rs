//! The equivalence rule: OpenAI outputs reduced to their shape (keys and types, no values)
//! and compared field by field.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// One labelled OpenAI output of a scenario, compared by [`shape`] across providers.
#[derive(Debug, Clone)]
pub struct Specimen {
    pub label: String,
    pub value: Value,
}

pub fn specimen(label: impl Into<String>, value: Value) -> Specimen {
    Specimen {
        label: label.into(),
        value,
    }
}

/// Fields only the OpenAI API itself fills (optional in its schema, tied to OpenAI's own
/// models and service): the OpenAI passthrough carries them, translated answers need not,
/// and [`shape`] leaves them out.
pub const OPENAI_ONLY_FIELDS: &[&str] = &[
    "system_fingerprint",
    "service_tier",
    "annotations",
    "refusal",
    "obfuscation",
    "completion_tokens_details",
    "audio_tokens",
];

/// Fields the OpenAI schema declares nullable (and clients read as "nothing" when absent):
/// null, absent and a value are compatible; two values of different types are not.
pub const NULLABLE_FIELDS: &[&str] = &["content", "param", "code"];

/// The structure of a JSON value with its contents erased: objects keep their keys (sorted,
/// minus [`OPENAI_ONLY_FIELDS`]) with the shapes of their values, an array becomes `[]` or
/// a one-element array holding its elements' shapes merged ([`merge_shapes`]), and a
/// scalar becomes its type name. Two outputs with equal shapes have the same keys at the
/// same places with the same types, whatever the text, ids, numbers and lengths.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(n) if n.is_u64() || n.is_i64() => json!("integer"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => {
            let merged = a.iter().map(shape).reduce(|x, y| merge_shapes(&x, &y));
            Value::Array(merged.into_iter().collect())
        }
        Value::Object(m) => {
            let sorted: BTreeMap<&String, Value> = m
                .iter()
                .filter(|(k, _)| !OPENAI_ONLY_FIELDS.contains(&k.as_str()))
                .map(|(k, v)| (k, shape(v)))
                .collect();
            json!(sorted)
        }
    }
}

/// One shape covering both: objects get the union of their keys, `null` gives way to a
/// type, and two different types become `"a|b"`.
pub fn merge_shapes(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut out = x.clone();
            for (k, vb) in y {
                let merged = match x.get(k) {
                    Some(va) => merge_shapes(va, vb),
                    None => vb.clone(),
                };
                out.insert(k.clone(), merged);
            }
            let sorted: BTreeMap<String, Value> = out.into_iter().collect();
            json!(sorted)
        }
        (Value::Array(x), Value::Array(y)) => {
            let merged = x
                .iter()
                .chain(y)
                .cloned()
                .reduce(|p, q| merge_shapes(&p, &q));
            Value::Array(merged.into_iter().collect())
        }
        _ if a == b => a.clone(),
        (Value::String(n), _) if n == "null" => b.clone(),
        (_, Value::String(n)) if n == "null" => a.clone(),
        _ => {
            let mut names: Vec<String> = [a, b]
                .iter()
                .flat_map(|v| match v {
                    Value::String(s) => s.split('|').map(str::to_string).collect(),
                    other => vec![other.to_string()],
                })
                .collect();
            names.sort();
            names.dedup();
            json!(names.join("|"))
        }
    }
}

/// Where two shapes differ, as `path: a-shape vs b-shape` lines (see [`NULLABLE_FIELDS`]).
pub fn shape_diff(a: &Value, b: &Value, path: &str, out: &mut Vec<String>) {
    let nullable = path
        .rsplit('.')
        .next()
        .is_some_and(|k| NULLABLE_FIELDS.contains(&k));
    let null = json!("null");
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                let optional = NULLABLE_FIELDS.contains(&k.as_str());
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => shape_diff(va, vb, &p, out),
                    (Some(_), None) | (None, Some(_)) if optional => {}
                    (Some(va), None) => out.push(format!("{p}: {va} vs (absent)")),
                    (None, Some(vb)) => out.push(format!("{p}: (absent) vs {vb}")),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == 1 && y.len() == 1 => {
            shape_diff(&x[0], &y[0], &format!("{path}[]"), out)
        }
        _ if nullable && (*a == null || *b == null) => {}
        _ if a != b => out.push(format!("{path}: {a} vs {b}")),
        _ => {}
    }
}
