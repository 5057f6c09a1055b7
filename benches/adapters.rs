//! Provider adapters: translating a client request into each provider's wire format, and
//! translating each provider's recorded event stream (`tests/fixtures/<provider>/`) back into
//! OpenAI chunks, in bytes per second.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tollgate::api::ChatRequest;
use tollgate::providers::sse::DEFAULT_MAX_EVENT_BYTES;
use tollgate::providers::{adapter_for, ProviderKind, ResponseContext, TargetSpec};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(rel: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request(rel: &str) -> ChatRequest {
    serde_json::from_slice(&fixture(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// An upstream model id of each provider (what the adapter writes into the body).
fn upstream_model(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "gpt-4o-mini",
        ProviderKind::Anthropic => "claude-haiku-4-5-20251001",
        ProviderKind::Mistral => "mistral-small-latest",
        ProviderKind::Cortex => "llama3.1-70b",
    }
}

fn build_request(c: &mut Criterion) {
    let requests = [
        // One user question.
        (
            "question",
            request("openai/text_nonstream_gpt4o.request.json"),
        ),
        // A conversation with a tool definition, a tool call and its result.
        (
            "tool_conversation",
            request("anthropic/handwritten/tool_conversation.openai.json"),
        ),
    ];
    let mut g = c.benchmark_group("build_request");
    for kind in ProviderKind::ALL {
        let adapter = adapter_for(kind);
        let target = TargetSpec::new(upstream_model(kind));
        for (name, req) in &requests {
            adapter
                .build_request(req, &target)
                .unwrap_or_else(|e| panic!("{kind} {name}: {e}"));
            g.bench_with_input(BenchmarkId::new(kind.as_str(), name), req, |b, req| {
                b.iter(|| adapter.build_request(req, &target))
            });
        }
    }
    g.finish();
}

fn translate_stream(c: &mut Criterion) {
    let streams = [
        (
            ProviderKind::OpenAi,
            "openai/text_stream_include_usage_gpt4o.stream.sse",
        ),
        (
            ProviderKind::Anthropic,
            "anthropic/recorded/text_stream_sonnet46_after_tool_result.stream.sse",
        ),
        (
            ProviderKind::Mistral,
            "mistral/text_stream_after_tool_mistral_large.stream.sse",
        ),
        (ProviderKind::Cortex, "cortex/native_text_stream.stream.sse"),
    ];
    let ctx = ResponseContext {
        id: "chatcmpl-bench".into(),
        created: 1_700_000_000,
        model: "bench".into(),
        include_usage: true,
        max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
    };
    let mut g = c.benchmark_group("translate_stream");
    for (kind, rel) in streams {
        let adapter = adapter_for(kind);
        let input = fixture(rel);
        g.throughput(Throughput::Bytes(input.len() as u64));
        // As one read, and as the network might deliver it: 256-byte pieces that split
        // events.
        for (label, piece) in [("whole", input.len()), ("256B_reads", 256)] {
            g.bench_with_input(
                BenchmarkId::new(kind.as_str(), label),
                &input,
                |b, input| {
                    b.iter(|| {
                        let mut t = adapter.stream_translator(&ctx);
                        let mut out = BytesMut::with_capacity(input.len() * 2);
                        for chunk in input.chunks(piece) {
                            t.push(chunk, &mut out).expect("translates");
                        }
                        t.finish(&mut out).expect("ends");
                        assert!(t.is_done());
                        out
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, build_request, translate_stream);
criterion_main!(benches);
