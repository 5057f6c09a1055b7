//! Talking to the simulated providers over real HTTP: starting one with a key, reading
//! answers and SSE bodies, comparing shapes with recorded traffic, and checking tool
//! arguments against a JSON schema.

use futures_util::StreamExt;
use serde_json::{json, Value};
use tollgate::providers::sse::parse_all;
use tollgate::providers::ProviderKind;
use tollgate::sim::{SimOptions, SimServer};

/// A simulator of `kind` that requires `key`.
pub async fn start(kind: ProviderKind, key: &str) -> SimServer {
    let opts = SimOptions {
        api_key: Some(key.into()),
        ..Default::default()
    };
    SimServer::start(kind, opts).await.unwrap()
}

/// The structure of a JSON value: keys and types, not values. Arrays take the shape of
/// their first element.
pub fn shape(v: &Value) -> Value {
    match v {
        Value::Null => json!("null"),
        Value::Bool(_) => json!("bool"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
        Value::Array(a) => match a.first() {
            Some(x) => json!([shape(x)]),
            None => json!([]),
        },
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
    }
}

/// POSTs `body` as JSON to `url` with `key` as a bearer token.
pub async fn post_bearer(url: &str, key: &str, body: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The status and JSON body of an answer.
pub async fn status_and_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// The `data:` payloads of an SSE body (multi-line data joined with `\n`).
pub fn events(body: &[u8]) -> Vec<String> {
    parse_all(body, body.len())
        .into_iter()
        .map(|e| e.data)
        .collect()
}

/// The JSON chunks of an SSE body (without `[DONE]`).
pub fn chunks(body: &[u8]) -> Vec<Value> {
    events(body)
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Reads a streamed body until it ends or fails: the bytes received, and whether the
/// client saw an error (a reset connection).
pub async fn read_until_error(r: reqwest::Response) -> (Vec<u8>, bool) {
    let mut stream = r.bytes_stream();
    let mut received = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(b) => received.extend_from_slice(&b),
            Err(_) => return (received, true),
        }
    }
    (received, false)
}

/// A small JSON-schema checker for the subset the tests use.
pub fn conforms(schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        return if options.contains(v) {
            Ok(())
        } else {
            Err(format!("{at}: {v} not in enum"))
        };
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("any");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    };
    if !ok {
        return Err(format!("{at}: expected {ty}, got {v}"));
    }
    if let Some(x) = v.as_f64() {
        let below = schema
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x < m);
        let above = schema
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| x > m);
        if below || above {
            return Err(format!("{at}: {x} out of range"));
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        let few = schema
            .get("minItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n < m);
        let many = schema
            .get("maxItems")
            .and_then(Value::as_u64)
            .is_some_and(|m| n > m);
        if few || many {
            return Err(format!("{at}: {n} items"));
        }
        for (i, item) in items.iter().enumerate() {
            conforms(&schema["items"], item, &format!("{at}[{i}]"))?;
        }
    }
    if let Some(obj) = v.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = r.as_str().unwrap();
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing {key}"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => conforms(sub, val, &format!("{at}.{k}"))?,
                None if schema.get("additionalProperties") == Some(&json!(false)) => {
                    return Err(format!("{at}: unexpected {k}"))
                }
                None => {}
            }
        }
    }
    Ok(())
}

/// The parameters of a `book_table` tool: every type, bounds, an enum, an array and a
/// nested object, for checking generated arguments with [`conforms`].
pub fn booking_schema() -> Value {
    json!({"type": "object", "additionalProperties": false,
        "properties": {
            "restaurant": {"type": "string"},
            "guests": {"type": "integer", "minimum": 1, "maximum": 12},
            "budget": {"type": "number", "minimum": 10, "maximum": 500},
            "outdoor": {"type": "boolean"},
            "time": {"type": "string", "enum": ["18:00", "19:30", "21:00"]},
            "diet": {"type": "array", "items": {"type": "string", "enum": ["vegan", "halal", "none"]}, "minItems": 1, "maxItems": 2},
            "contact": {"type": "object", "properties": {"name": {"type": "string"}, "phone": {"type": "string"}}, "required": ["name", "phone"]}
        },
        "required": ["restaurant", "guests", "budget", "outdoor", "time", "diet", "contact"]})
}
