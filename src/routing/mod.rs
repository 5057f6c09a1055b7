//! Routing: which chain of models serves a request.
//!
//! [`classifier`] scores the request into a tier; [`plan`] turns (tier, budget state,
//! cost ceiling, context size, latency class) into an ordered chain, skipping upstreams
//! whose [`breaker`] is open; [`backoff`] spaces retries; [`latency`] tracks each
//! upstream's time to first token.

pub mod backoff;
pub mod breaker;
pub mod classifier;
pub mod eval;
pub mod latency;
pub mod plan;
