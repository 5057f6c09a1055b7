//! A client request body: parsing and validation, then translation into every provider's
//! request, in every Cortex mode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::api::RequestLimits;
use tollgate::providers::{adapter_for, CortexMode, ProviderKind, TargetSpec};
use tollgate::proxy::chat::parse_request;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = parse_request(data, &RequestLimits::default()) else {
        return;
    };
    for kind in ProviderKind::ALL {
        for mode in [CortexMode::Complete, CortexMode::ChatCompletions] {
            let spec = TargetSpec {
                cortex_mode: mode,
                ..TargetSpec::new("model-x")
            };
            let _ = adapter_for(kind).build_request(&req, &spec);
        }
    }
});
