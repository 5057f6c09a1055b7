//! Cortex adapter (placeholder until its translator lands).

use bytes::BytesMut;
use http::HeaderMap;

use super::{
    AdapterError, ProviderAdapter, ProviderKind, ResponseContext, StreamOutcome, StreamTranslator,
    TargetSpec, Translated, UpstreamError, UpstreamErrorKind, UpstreamRequest,
};
use crate::api::ChatRequest;

pub struct CortexAdapter;

impl ProviderAdapter for CortexAdapter {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Cortex
    }

    fn build_request(
        &self,
        _req: &ChatRequest,
        _target: &TargetSpec<'_>,
    ) -> Result<UpstreamRequest, AdapterError> {
        Err(AdapterError::invalid("provider not supported yet", None))
    }

    fn parse_response(
        &self,
        _body: &[u8],
        _ctx: &ResponseContext,
    ) -> Result<Translated, AdapterError> {
        Err(AdapterError::MalformedResponse(
            "provider not supported yet".into(),
        ))
    }

    fn parse_error(&self, status: u16, _headers: &HeaderMap, _body: &[u8]) -> UpstreamError {
        UpstreamError {
            status,
            kind: UpstreamErrorKind::from_status(status),
            message: format!("upstream returned {status}"),
            code: None,
            param: None,
            retry_after: None,
        }
    }

    fn stream_translator(&self, _ctx: &ResponseContext) -> Box<dyn StreamTranslator> {
        Box::new(Placeholder)
    }
}

struct Placeholder;

impl StreamTranslator for Placeholder {
    fn push(&mut self, _chunk: &[u8], _out: &mut BytesMut) -> Result<(), AdapterError> {
        Err(AdapterError::Truncated)
    }
    fn finish(&mut self, _out: &mut BytesMut) -> Result<(), AdapterError> {
        Err(AdapterError::Truncated)
    }
    fn is_done(&self) -> bool {
        true
    }
    fn outcome(&self) -> StreamOutcome {
        StreamOutcome::default()
    }
}
