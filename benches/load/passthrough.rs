//! The floor for "Pingora plus nothing": a minimal Pingora HTTP/1 proxy that forwards every
//! request unchanged to one upstream, with Pingora's connection pool and the same worker
//! thread count as the gateway. `benches/load.sh` measures it between the direct calls and
//! tollgate, so that what tollgate adds can be told apart from what Pingora costs.
//!
//! ```text
//! cargo run --release --example passthrough -- LISTEN UPSTREAM [THREADS]
//! cargo run --release --example passthrough -- 127.0.0.1:8190 127.0.0.1:8180 2
//! ```

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// Sends everything to `upstream` over plain HTTP.
struct Passthrough {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.upstream.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream) = match (args.first(), args.get(1)) {
        (Some(l), Some(u)) => (l.clone(), u.clone()),
        _ => {
            eprintln!("usage: passthrough LISTEN UPSTREAM [THREADS]");
            std::process::exit(2);
        }
    };
    let threads = match args.get(2).map(|t| t.parse::<usize>()) {
        None => 2,
        Some(Ok(t)) if t > 0 => t,
        Some(_) => {
            eprintln!("THREADS must be a positive number");
            std::process::exit(2);
        }
    };
    let conf = ServerConf {
        threads,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Passthrough { upstream });
    proxy.add_tcp(&listen);
    server.add_service(proxy);
    server.run_forever();
}
