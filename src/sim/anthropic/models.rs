//! The models of the simulated Anthropic API: the `GET /v1/models` list, aliases resolved to
//! dated snapshots (as reported in responses), output-token limits, and which names are
//! accepted at all.
//!
//! A name is accepted when it is a listed id or alias, or when it looks like a Claude model
//! (`claude-…` naming a family: `opus`, `sonnet`, `haiku`, `fable` or `mythos`), so that
//! models released after
//! this table still work. Anything else is a `404 not_found_error` with the message
//! `model: <name>`, as the real API answers a misspelt name (`claude-sonet-4-5` is recorded).

use serde_json::{json, Value};

/// One listed model.
pub(super) struct ModelInfo {
    /// The dated id.
    pub id: &'static str,
    /// The alias that resolves to it, when there is one.
    pub alias: Option<&'static str>,
    pub display_name: &'static str,
    /// RFC 3339.
    pub created_at: &'static str,
    /// Largest `max_tokens` accepted.
    pub max_output: u64,
}

const fn m(
    id: &'static str,
    alias: Option<&'static str>,
    display_name: &'static str,
    created_at: &'static str,
    max_output: u64,
) -> ModelInfo {
    ModelInfo {
        id,
        alias,
        display_name,
        created_at,
        max_output,
    }
}

/// Newest first, as `GET /v1/models` lists them.
pub(super) const MODELS: &[ModelInfo] = &[
    m(
        "claude-opus-4-6",
        None,
        "Claude Opus 4.6",
        "2026-02-05T00:00:00Z",
        128_000,
    ),
    m(
        "claude-sonnet-4-6",
        None,
        "Claude Sonnet 4.6",
        "2026-02-17T00:00:00Z",
        64_000,
    ),
    m(
        "claude-opus-4-5-20251101",
        Some("claude-opus-4-5"),
        "Claude Opus 4.5",
        "2025-11-24T00:00:00Z",
        64_000,
    ),
    m(
        "claude-haiku-4-5-20251001",
        Some("claude-haiku-4-5"),
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
        64_000,
    ),
    m(
        "claude-sonnet-4-5-20250929",
        Some("claude-sonnet-4-5"),
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
        64_000,
    ),
    m(
        "claude-opus-4-1-20250805",
        Some("claude-opus-4-1"),
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
        32_000,
    ),
    m(
        "claude-opus-4-20250514",
        Some("claude-opus-4-0"),
        "Claude Opus 4",
        "2025-05-22T00:00:00Z",
        32_000,
    ),
    m(
        "claude-sonnet-4-20250514",
        Some("claude-sonnet-4-0"),
        "Claude Sonnet 4",
        "2025-05-22T00:00:00Z",
        64_000,
    ),
    m(
        "claude-3-7-sonnet-20250219",
        Some("claude-3-7-sonnet-latest"),
        "Claude Sonnet 3.7",
        "2025-02-24T00:00:00Z",
        64_000,
    ),
    m(
        "claude-3-5-haiku-20241022",
        Some("claude-3-5-haiku-latest"),
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
        8_192,
    ),
    m(
        "claude-3-haiku-20240307",
        None,
        "Claude Haiku 3",
        "2024-03-07T00:00:00Z",
        4_096,
    ),
    m(
        "claude-3-opus-20240229",
        Some("claude-3-opus-latest"),
        "Claude Opus 3",
        "2024-02-29T00:00:00Z",
        4_096,
    ),
];

/// The listed model with this id or alias.
pub(super) fn find(name: &str) -> Option<&'static ModelInfo> {
    MODELS
        .iter()
        .find(|m| m.id == name || m.alias == Some(name))
}

/// Whether the API accepts `name` (a listed model, or a plausible newer Claude model).
pub(super) fn accepted(name: &str) -> bool {
    if find(name).is_some() {
        return true;
    }
    let Some(rest) = name.strip_prefix("claude-") else {
        return false;
    };
    rest.split(['-', '.'])
        .any(|part| matches!(part, "opus" | "sonnet" | "haiku" | "fable" | "mythos"))
}

/// The model id a response reports: the dated snapshot of an alias, else the name itself.
pub(super) fn resolved(name: &str) -> &str {
    find(name).map(|m| m.id).unwrap_or(name)
}

/// The output-token limit of a listed model.
pub(super) fn max_output(name: &str) -> Option<u64> {
    find(name).map(|m| m.max_output)
}

/// The `ModelInfo` object of `GET /v1/models`.
pub(super) fn card(m: &ModelInfo) -> Value {
    json!({"type": "model", "id": m.id, "display_name": m.display_name, "created_at": m.created_at})
}

/// The `GET /v1/models` page (everything fits on one page).
pub(super) fn list() -> Value {
    let data: Vec<Value> = MODELS.iter().map(card).collect();
    json!({
        "data": data,
        "has_more": false,
        "first_id": MODELS.first().map(|m| m.id),
        "last_id": MODELS.last().map(|m| m.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_the_recorded_snapshots() {
        assert_eq!(resolved("claude-sonnet-4-5"), "claude-sonnet-4-5-20250929");
        assert_eq!(resolved("claude-haiku-4-5"), "claude-haiku-4-5-20251001");
        assert_eq!(resolved("claude-3-opus-latest"), "claude-3-opus-20240229");
        assert_eq!(resolved("claude-sonnet-4-6"), "claude-sonnet-4-6");
        assert_eq!(resolved("claude-future-9"), "claude-future-9");
    }

    #[test]
    fn accepts_claude_families_and_rejects_misspellings() {
        assert!(accepted("claude-sonnet-4-5"));
        assert!(accepted("claude-opus-5"));
        assert!(accepted("claude-fable-5-2"));
        assert!(accepted("claude-3-5-sonnet-20241022"));
        assert!(!accepted("claude-sonet-4-5"));
        assert!(!accepted("gpt-4o"));
        assert!(!accepted(""));
    }
}
