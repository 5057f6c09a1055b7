//! JSON Schema → a value that satisfies it, for simulated tool-call arguments.
//!
//! Covers what function-calling schemas use: `type` (string or list), `properties` with
//! `required`, `items` / `prefixItems` with `minItems` / `maxItems`, `enum`, `const`,
//! `anyOf` / `oneOf` (first usable branch), `allOf` (merged objects), local `$ref`s
//! (`#/$defs/…`, `#/definitions/…`), string `format`s and length bounds, and numeric bounds.
//! `pattern` is not interpreted. Values are deterministic for a given seed; recursion is cut
//! off at a fixed depth.

use fastrand::Rng;
use serde_json::{Map, Number, Value};

const MAX_DEPTH: usize = 12;
const MAX_NODES: usize = 2_000;

const CITIES: &[&str] = &[
    "Paris", "London", "Tokyo", "Lisbon", "Oslo", "Nairobi", "Lima",
];
const COUNTRIES: &[&str] = &["France", "Japan", "Kenya", "Peru", "Norway", "Portugal"];
const NAMES: &[&str] = &["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald"];
const WORDS: &[&str] = &[
    "alpha", "bravo", "delta", "harbor", "meadow", "signal", "summit", "valley", "orbit",
];

/// A value satisfying `schema`, seeded by `seed`.
pub fn generate(schema: &Value, seed: u64) -> Value {
    generate_for_prompt(schema, seed, "")
}

/// Like [`generate`], but string properties named like a place or a person (`city`,
/// `location`, `country`, `name`, …) take a proper noun from `prompt` when it has one
/// (`"weather in Paris"` → `{"city": "Paris"}`).
pub fn generate_for_prompt(schema: &Value, seed: u64, prompt: &str) -> Value {
    let mut g = Gen {
        root: schema,
        rng: Rng::with_seed(seed),
        budget: MAX_NODES,
        nouns: proper_nouns(prompt),
    };
    g.value(schema, "", 0)
}

/// Capitalised words that do not start a sentence, without surrounding punctuation.
fn proper_nouns(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    for raw in prompt.split_whitespace() {
        let word = raw.trim_matches(|c: char| !c.is_alphanumeric());
        if !sentence_start && word.chars().next().is_some_and(char::is_uppercase) && word != "I" {
            out.push(word.to_string());
        }
        sentence_start = raw.ends_with(['.', '?', '!', ':']);
    }
    out
}

struct Gen<'a> {
    root: &'a Value,
    rng: Rng,
    /// Values still allowed to be generated (bounds recursive schemas).
    budget: usize,
    /// Proper nouns of the prompt, used for place and person names.
    nouns: Vec<String>,
}

impl<'a> Gen<'a> {
    fn value(&mut self, schema: &'a Value, name: &str, depth: usize) -> Value {
        let obj = match schema {
            Value::Object(o) => o,
            Value::Bool(false) => return Value::Null,
            _ => return Value::String(self.word()),
        };
        if depth > MAX_DEPTH || self.budget == 0 {
            return self.shallow(obj);
        }
        self.budget -= 1;
        if let Some(target) = obj
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| self.resolve(r))
        {
            return self.value(target, name, depth + 1);
        }
        if let Some(c) = obj.get("const") {
            return c.clone();
        }
        if let Some(Value::Array(options)) = obj.get("enum") {
            if !options.is_empty() {
                let non_null: Vec<&Value> = options.iter().filter(|v| !v.is_null()).collect();
                let pool: Vec<&Value> = if non_null.is_empty() {
                    options.iter().collect()
                } else {
                    non_null
                };
                return pool[self.rng.usize(0..pool.len())].clone();
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = obj.get(key) {
                let pick = branches
                    .iter()
                    .find(|b| !is_null_schema(b))
                    .or_else(|| branches.first());
                if let Some(b) = pick {
                    return self.value(b, name, depth + 1);
                }
            }
        }
        if let Some(Value::Array(parts)) = obj.get("allOf") {
            let merged = merge_all_of(obj, parts, self.root);
            return self.value_of_object_schema(&merged, name, depth);
        }
        self.by_type(obj, name, depth)
    }

    fn value_of_object_schema(
        &mut self,
        merged: &Map<String, Value>,
        name: &str,
        depth: usize,
    ) -> Value {
        // `merged` is a temporary: generate from it with a generator that shares the root
        // (for `$ref`s) and the remaining node budget.
        let owned = Value::Object(merged.clone());
        let mut sub = Gen {
            root: self.root,
            rng: Rng::with_seed(self.rng.u64(..)),
            budget: self.budget,
            nouns: std::mem::take(&mut self.nouns),
        };
        let out = sub.value(&owned, name, depth + 1);
        self.budget = sub.budget;
        self.nouns = sub.nouns;
        out
    }

    fn by_type(&mut self, obj: &'a Map<String, Value>, name: &str, depth: usize) -> Value {
        match schema_type(obj).as_str() {
            "object" => self.object(obj, depth),
            "array" => self.array(obj, name, depth),
            "integer" => self.integer(obj),
            "number" => self.number(obj),
            "boolean" => Value::Bool(self.rng.bool()),
            "null" => Value::Null,
            _ => Value::String(self.string(obj, name)),
        }
    }

    fn object(&mut self, obj: &'a Map<String, Value>, depth: usize) -> Value {
        let mut out = Map::new();
        let required: Vec<&str> = obj
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(props)) = obj.get("properties") {
            for (key, sub) in props {
                if required.contains(&key.as_str()) || self.rng.bool() {
                    let v = self.value(sub, key, depth + 1);
                    out.insert(key.clone(), v);
                }
            }
        }
        // Required keys without a property schema still have to be present.
        for key in required {
            if !out.contains_key(key) {
                let v = match obj.get("additionalProperties") {
                    Some(s @ Value::Object(_)) => self.value(s, key, depth + 1),
                    _ => Value::String(self.word()),
                };
                out.insert(key.to_string(), v);
            }
        }
        Value::Object(out)
    }

    fn array(&mut self, obj: &'a Map<String, Value>, name: &str, depth: usize) -> Value {
        let min = obj.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = obj
            .get("maxItems")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        let prefix: &[Value] = obj
            .get("prefixItems")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let mut n = min.max(prefix.len()).max(1 + self.rng.usize(0..3));
        if let Some(max) = max {
            n = n.min(max).max(min.min(max));
        }
        let n = n.min(64);
        let unique = obj
            .get("uniqueItems")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let items = obj.get("items");
        let mut out: Vec<Value> = Vec::with_capacity(n);
        let mut attempts = 0;
        while out.len() < n && attempts < n * 8 {
            attempts += 1;
            let i = out.len();
            let v = match (prefix.get(i), items) {
                (Some(s), _) => self.value(s, name, depth + 1),
                (None, Some(s)) => self.value(s, name, depth + 1),
                (None, None) => Value::String(self.word()),
            };
            if unique && out.contains(&v) {
                continue;
            }
            out.push(v);
        }
        Value::Array(out)
    }

    fn integer(&mut self, obj: &Map<String, Value>) -> Value {
        let (lo, hi) = int_bounds(obj);
        let mut v = if lo <= hi { self.rng.i64(lo..=hi) } else { lo };
        if let Some(m) = obj
            .get("multipleOf")
            .and_then(Value::as_i64)
            .filter(|m| *m > 0)
        {
            let up = v.div_euclid(m).saturating_add(1).saturating_mul(m);
            let down = v.div_euclid(m).saturating_mul(m);
            v = if down >= lo { down } else { up };
        }
        Value::Number(Number::from(v))
    }

    fn number(&mut self, obj: &Map<String, Value>) -> Value {
        let lower = bound(obj, "minimum", "exclusiveMinimum", true);
        let upper = bound(obj, "maximum", "exclusiveMaximum", false);
        let (lo, hi) = match (lower, upper) {
            (Some(lo), Some(hi)) => (lo, hi),
            (Some(lo), None) => (lo, lo + 100.0),
            (None, Some(hi)) => (hi - 100.0, hi),
            (None, None) => (1.0, 100.0),
        };
        let v = if lo < hi {
            // Two decimals, strictly inside the range.
            let x = lo + (hi - lo) * (0.1 + 0.8 * self.rng.f64());
            let rounded = (x * 100.0).round() / 100.0;
            if rounded > lo && rounded < hi {
                rounded
            } else {
                (lo + hi) / 2.0
            }
        } else {
            lo
        };
        Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::from(0))
    }

    fn string(&mut self, obj: &Map<String, Value>, name: &str) -> String {
        let format = obj.get("format").and_then(Value::as_str).unwrap_or("");
        let mut s = match format {
            "date" => format!("2024-{:02}-{:02}", self.rng.u8(1..=12), self.rng.u8(1..=28)),
            "date-time" => format!(
                "2024-{:02}-{:02}T{:02}:{:02}:00Z",
                self.rng.u8(1..=12),
                self.rng.u8(1..=28),
                self.rng.u8(0..24),
                self.rng.u8(0..60)
            ),
            "time" => format!("{:02}:{:02}:00", self.rng.u8(0..24), self.rng.u8(0..60)),
            "email" => format!("{}@example.com", self.pick(NAMES).to_lowercase()),
            "uri" | "url" => format!("https://example.com/{}", self.word()),
            "uuid" => {
                let h = format!("{:016x}{:016x}", self.rng.u64(..), self.rng.u64(..));
                format!(
                    "{}-{}-4{}-a{}-{}",
                    &h[0..8],
                    &h[8..12],
                    &h[13..16],
                    &h[17..20],
                    &h[20..32]
                )
            }
            "ipv4" => format!(
                "10.{}.{}.{}",
                self.rng.u8(..),
                self.rng.u8(..),
                self.rng.u8(1..255)
            ),
            _ => self.hinted(name),
        };
        let min = obj.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = obj
            .get("maxLength")
            .and_then(Value::as_u64)
            .map(|m| m as usize);
        while s.chars().count() < min {
            s.push(' ');
            s.push_str(&self.word());
        }
        if let Some(max) = max {
            if s.chars().count() > max {
                s = s.chars().take(max).collect();
            }
        }
        s
    }

    /// A plausible string for a property name (`city`, `country`, `name`, …).
    fn hinted(&mut self, name: &str) -> String {
        let n = name.to_ascii_lowercase();
        let place_or_person = [
            "city", "location", "place", "country", "name", "user", "person",
        ]
        .iter()
        .any(|h| n.contains(h));
        if place_or_person {
            if let Some(noun) = self.nouns.first() {
                return noun.clone();
            }
        }
        if n.contains("city") || n.contains("location") || n.contains("place") {
            self.pick(CITIES).to_string()
        } else if n.contains("country") {
            self.pick(COUNTRIES).to_string()
        } else if n.contains("name") || n.contains("user") || n.contains("person") {
            self.pick(NAMES).to_string()
        } else {
            let words = 1 + self.rng.usize(0..2);
            (0..words)
                .map(|_| self.word())
                .collect::<Vec<_>>()
                .join(" ")
        }
    }

    fn shallow(&mut self, obj: &Map<String, Value>) -> Value {
        match schema_type(obj).as_str() {
            "object" => Value::Object(Map::new()),
            "array" => Value::Array(Vec::new()),
            "integer" | "number" => Value::from(0),
            "boolean" => Value::Bool(false),
            "null" => Value::Null,
            _ => Value::String(String::new()),
        }
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        if pointer.is_empty() {
            return Some(self.root);
        }
        self.root.pointer(pointer)
    }

    fn word(&mut self) -> String {
        self.pick(WORDS).to_string()
    }

    fn pick(&mut self, from: &[&'static str]) -> &'static str {
        from[self.rng.usize(0..from.len())]
    }
}

/// The declared (or implied) type; for a list of types, the first that is not `null`.
fn schema_type(obj: &Map<String, Value>) -> String {
    match obj.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .or_else(|| ts.iter().filter_map(Value::as_str).next())
            .unwrap_or("string")
            .to_string(),
        _ if obj.contains_key("properties") || obj.contains_key("required") => "object".into(),
        _ if obj.contains_key("items") || obj.contains_key("prefixItems") => "array".into(),
        _ if obj.contains_key("minimum") || obj.contains_key("maximum") => "number".into(),
        _ => "string".into(),
    }
}

fn is_null_schema(v: &Value) -> bool {
    v.get("type").and_then(Value::as_str) == Some("null")
}

/// `allOf` (plus the schema's own keywords) merged into one object schema: properties and
/// `required` are unioned, other keywords taken from the first branch that has them.
fn merge_all_of(own: &Map<String, Value>, parts: &[Value], root: &Value) -> Map<String, Value> {
    let mut merged = own.clone();
    merged.remove("allOf");
    let mut props = match merged.remove("properties") {
        Some(Value::Object(p)) => p,
        _ => Map::new(),
    };
    let mut required: Vec<Value> = match merged.remove("required") {
        Some(Value::Array(r)) => r,
        _ => Vec::new(),
    };
    for part in parts {
        let part = match part.get("$ref").and_then(Value::as_str) {
            Some(r) => r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(part),
            None => part,
        };
        let Some(p) = part.as_object() else { continue };
        for (k, v) in p {
            match k.as_str() {
                "properties" => {
                    if let Value::Object(ps) = v {
                        for (pk, pv) in ps {
                            props.entry(pk.clone()).or_insert_with(|| pv.clone());
                        }
                    }
                }
                "required" => {
                    for r in v.as_array().into_iter().flatten() {
                        if !required.contains(r) {
                            required.push(r.clone());
                        }
                    }
                }
                _ => {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    if !props.is_empty() {
        merged.insert("properties".into(), Value::Object(props));
    }
    if !required.is_empty() {
        merged.insert("required".into(), Value::Array(required));
    }
    merged
}

fn int_bounds(obj: &Map<String, Value>) -> (i64, i64) {
    let num = |k: &str| obj.get(k).and_then(Value::as_f64);
    let lo = match (num("minimum"), num("exclusiveMinimum")) {
        (None, None) => None,
        (a, b) => Some(
            a.map(|v| v.ceil() as i64)
                .unwrap_or(i64::MIN)
                .max(b.map(|x| x.floor() as i64 + 1).unwrap_or(i64::MIN)),
        ),
    };
    let hi = match (num("maximum"), num("exclusiveMaximum")) {
        (None, None) => None,
        (a, b) => Some(
            a.map(|v| v.floor() as i64)
                .unwrap_or(i64::MAX)
                .min(b.map(|x| x.ceil() as i64 - 1).unwrap_or(i64::MAX)),
        ),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) => (lo, hi),
        (Some(lo), None) => (lo, lo.saturating_add(99)),
        (None, Some(hi)) => (if hi >= 1 { 1 } else { hi.saturating_sub(99) }, hi),
        (None, None) => (1, 100),
    }
}

/// The tighter of an inclusive and an exclusive bound, when either is given.
fn bound(obj: &Map<String, Value>, incl: &str, excl: &str, lower: bool) -> Option<f64> {
    let inclusive = obj.get(incl).and_then(Value::as_f64);
    let exclusive = obj.get(excl).and_then(Value::as_f64);
    match (inclusive, exclusive) {
        (Some(a), Some(b)) => Some(if lower { a.max(b) } else { a.min(b) }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_has_required_keys_with_declared_types() {
        let s = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "precise": {"type": "boolean"},
                "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": 3},
                "where": {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}}, "required": ["lat"]}
            },
            "required": ["city", "days", "unit", "precise", "tags", "where"],
            "additionalProperties": false
        });
        for seed in 0..50 {
            let v = generate(&s, seed);
            assert!(v["city"].is_string());
            let days = v["days"].as_i64().unwrap();
            assert!((1..=7).contains(&days));
            assert!(["celsius", "fahrenheit"].contains(&v["unit"].as_str().unwrap()));
            assert!(v["precise"].is_boolean());
            let tags = v["tags"].as_array().unwrap();
            assert!((2..=3).contains(&tags.len()));
            let lat = v["where"]["lat"].as_f64().unwrap();
            assert!((-90.0..=90.0).contains(&lat));
        }
    }

    #[test]
    fn refs_any_of_nullable_and_formats() {
        let s = json!({
            "type": "object",
            "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"]}},
            "properties": {
                "p": {"$ref": "#/$defs/Point"},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 12}]},
                "when": {"type": ["string", "null"], "format": "date"},
                "code": {"type": "string", "minLength": 12, "maxLength": 20},
                "fixed": {"const": "v1"}
            },
            "required": ["p", "maybe", "when", "code", "fixed"]
        });
        let v = generate(&s, 9);
        assert!(v["p"]["x"].is_i64());
        assert_eq!(v["maybe"], json!(11));
        let when = v["when"].as_str().unwrap();
        assert_eq!(when.len(), 10);
        let code = v["code"].as_str().unwrap().chars().count();
        assert!((12..=20).contains(&code));
        assert_eq!(v["fixed"], json!("v1"));
    }

    #[test]
    fn all_of_merges_required_properties() {
        let s = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]}
        ]});
        let v = generate(&s, 1);
        assert!(v["a"].is_string() && v["b"].is_i64());
    }

    #[test]
    fn recursive_schema_terminates_and_odd_input_does_not_panic() {
        let s = json!({"$ref": "#"});
        let _ = generate(&s, 1);
        let s =
            json!({"type": "object", "properties": {"next": {"$ref": "#"}}, "required": ["next"]});
        let _ = generate(&s, 1);
        for odd in [
            json!(null),
            json!(true),
            json!(false),
            json!("x"),
            json!({"type": 5}),
            json!({"type": "integer", "minimum": 10, "maximum": 1}),
            json!({"type": "array", "maxItems": 0, "minItems": 3}),
        ] {
            let _ = generate(&odd, 3);
        }
    }

    #[test]
    fn place_names_come_from_the_prompt() {
        let s = json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
        assert_eq!(
            generate_for_prompt(&s, 1, "What's the weather in Paris?")["city"],
            "Paris"
        );
        assert_eq!(
            generate_for_prompt(&s, 1, "What is the capital of the UK? Use the tool.")["city"],
            "UK"
        );
        assert!(generate_for_prompt(&s, 1, "Hello there. Weather?")["city"].is_string());
    }

    #[test]
    fn deterministic_for_a_seed() {
        let s = json!({"type": "object", "properties": {"q": {"type": "string"}, "n": {"type": "number"}}});
        assert_eq!(generate(&s, 5), generate(&s, 5));
    }
}
