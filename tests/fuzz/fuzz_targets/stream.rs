//! An upstream answer in every provider's format: the stream translator fed the bytes in
//! chunks whose sizes come from the input, the whole-body parser and the error parser.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tollgate::providers::{adapter_for, ProviderKind, ResponseContext};

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let ctx = ResponseContext {
        id: "chatcmpl-fuzz".into(),
        created: 1,
        model: "m".into(),
        include_usage: seed & 1 == 1,
        max_event_bytes: 4096,
    };
    let step = usize::from(seed >> 1).max(1);
    for kind in ProviderKind::ALL {
        let adapter = adapter_for(kind);
        let mut xl = adapter.stream_translator(&ctx);
        let mut out = BytesMut::new();
        let mut failed = false;
        for chunk in body.chunks(step) {
            if xl.push(chunk, &mut out).is_err() {
                failed = true;
                break;
            }
            if xl.is_done() {
                break;
            }
        }
        if !failed && !xl.is_done() {
            let _ = xl.finish(&mut out);
        }
        let _ = xl.outcome();
        let _ = adapter.parse_response(body, &ctx);
        let _ = adapter.parse_error(400 + u16::from(seed), &http::HeaderMap::new(), body);
    }
});
