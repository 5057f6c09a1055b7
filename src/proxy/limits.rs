//! The rate limits of a chat request: taken after it is classified (its prompt counted)
//! and before its budget reservation, so a refused request holds nothing.

use super::ctx::RequestCtx;
use super::GatewayState;
use crate::api::ChatRequest;
use crate::budget::Caller;
use crate::config::Config;
use crate::error::GatewayError;
use crate::ratelimit::Refusal;

/// Takes the request and its estimated tokens — the counted prompt plus its `max_tokens`,
/// else `routing.expected_output_tokens` — from the limits of the caller's key and budget.
/// Fills in the `x-ratelimit-*` headers either way.
pub async fn admit(
    state: &GatewayState,
    config: &Config,
    req: &ChatRequest,
    caller: &Caller,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let output = req
        .max_output_tokens()
        .unwrap_or(config.routing.expected_output_tokens);
    let estimate = ctx.prompt_tokens.saturating_add(u64::from(output));
    let key_id = caller.key_id.as_deref();
    match state
        .ratelimit
        .acquire(&caller.budget, key_id, estimate)
        .await
    {
        Ok(None) => Ok(()),
        Ok(Some(grant)) => {
            ctx.rate_headers = grant.headers;
            ctx.rate_ticket = grant.ticket;
            Ok(())
        }
        Err(Refusal::Limited { detail, headers }) => {
            ctx.rate_headers = headers;
            state
                .metrics
                .rate_limited
                .with_label_values(&[&caller.budget.name, detail.scope(), detail.kind.as_str()])
                .inc();
            Err(GatewayError::RateLimited(detail))
        }
        Err(Refusal::Unavailable) => Err(GatewayError::AccountingUnavailable {
            detail: "the shared rate-limit state in Redis cannot be reached".into(),
        }),
    }
}
