//! [`SimFleet`]: every simulated provider on one dedicated thread with its own tokio runtime,
//! for the gateway's demo mode (whose Pingora runtimes are separate).

use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::provider_for;
use super::server::{SimOptions, SimServer};
use crate::providers::ProviderKind;

/// The simulated providers, served from a background thread until dropped.
pub struct SimFleet {
    servers: Vec<SimServer>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimFleet {
    /// Starts one server per provider that has a simulator, all with `opts`.
    pub fn spawn(opts: SimOptions) -> std::io::Result<SimFleet> {
        let (ready_tx, ready_rx) = mpsc::channel::<std::io::Result<Vec<SimServer>>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tollgate-sim".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let mut servers = Vec::new();
                    for kind in ProviderKind::ALL {
                        if provider_for(kind).is_none() {
                            continue;
                        }
                        match SimServer::start(kind, opts.clone()).await {
                            Ok(s) => servers.push(s),
                            Err(e) => {
                                let _ = ready_tx.send(Err(e));
                                return;
                            }
                        }
                    }
                    if ready_tx.send(Ok(servers)).is_err() {
                        return;
                    }
                    // Serve until the fleet is dropped (or its sender is).
                    let _ = stop_rx.await;
                });
            })?;
        match ready_rx.recv() {
            Ok(Ok(servers)) => Ok(SimFleet {
                servers,
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(std::io::Error::other(
                    "simulator thread ended before starting",
                ))
            }
        }
    }

    /// `http://127.0.0.1:PORT` of the simulated `kind`, or `None` when it has no simulator.
    pub fn base_url(&self, kind: ProviderKind) -> Option<String> {
        self.server(kind).map(SimServer::base_url)
    }

    /// The server simulating `kind` (to queue faults or read recorded requests).
    pub fn server(&self, kind: ProviderKind) -> Option<&SimServer> {
        self.servers.iter().find(|s| s.kind() == kind)
    }
}

impl Drop for SimFleet {
    fn drop(&mut self) {
        // Stop the accept loops first, then the runtime (which drops every task left).
        self.servers.clear();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for SimFleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimFleet")
            .field("servers", &self.servers)
            .finish()
    }
}
