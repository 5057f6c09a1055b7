//! A webhook receiver for alert tests: a real HTTP server on a free port that records
//! every delivery and can be told to fail the first N of them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde_json::Value;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub idempotency_header: Option<String>,
    pub body: Value,
    /// Whether it was answered 2xx.
    pub accepted: bool,
}

pub struct Webhook {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Delivery>>>,
    failures_left: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhook {
    /// Starts a receiver that answers 503 to the first `fail_first` deliveries.
    pub async fn start(fail_first: usize) -> Webhook {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicUsize::new(fail_first));
        let (rec, fail) = (received.clone(), failures_left.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (rec, fail) = (rec.clone(), fail.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let (rec, fail) = (rec.clone(), fail.clone());
                        async move {
                            let idem = req
                                .headers()
                                .get("idempotency-key")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string);
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let accepted = fail
                                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                                    n.checked_sub(1)
                                })
                                .is_err();
                            rec.lock().push(Delivery {
                                idempotency_header: idem,
                                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                                accepted,
                            });
                            let status = if accepted { 200 } else { 503 };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::from_static(b"ok")))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Webhook {
            addr,
            received,
            failures_left,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/alerts", self.addr)
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.received.lock().clone()
    }

    /// Accepted deliveries' bodies.
    pub fn accepted(&self) -> Vec<Value> {
        self.deliveries()
            .into_iter()
            .filter(|d| d.accepted)
            .map(|d| d.body)
            .collect()
    }

    /// Waits until `n` deliveries were accepted (or panics after `within`).
    pub async fn wait_accepted(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let a = self.accepted();
            if a.len() >= n {
                return a;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {n} alerts accepted: {:?}",
                a.len(),
                self.deliveries()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// From now on, every delivery is accepted.
    pub fn accept_all(&self) {
        self.failures_left.store(0, Ordering::SeqCst);
    }

    pub fn failures_left(&self) -> usize {
        self.failures_left.load(Ordering::SeqCst)
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}
