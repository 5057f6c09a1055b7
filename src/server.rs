//! Assembles and runs the Pingora server: the public proxy service on its listener, with
//! Unix signal handling for production and a stoppable in-process handle for tests and
//! embedding.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::configuration::ServerConf;
use pingora::server::{
    ExecutionPhase, RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, ShutdownWatch,
};
use pingora::services::background::{background_service, BackgroundService};
use pingora::services::listening::Service;

use crate::admin::AdminApp;
use crate::alerts::deliver::{ClusterClaim, Deliverer};
use crate::providers::auth::Secret;
use crate::proxy::conn::{ActiveConnections, GuardedApp};
use crate::proxy::{Gateway, GatewayState};
use crate::reload::{ReloadService, Reloader};

/// How the server runs.
#[derive(Clone)]
pub struct ServeOptions {
    pub listen: String,
    pub threads: usize,
    /// How long in-flight requests may finish after SIGTERM.
    pub grace: Duration,
    /// Admin listener and its bearer token.
    pub admin_listen: Option<String>,
    pub admin_token: Option<Secret>,
    /// Watches the config file (and SIGHUP) when set.
    pub reloader: Option<Arc<Reloader>>,
}

/// Whether `addr` can be listened on now (it is free and ours to bind).
pub fn check_listen(addr: &str) -> std::io::Result<()> {
    TcpListener::bind(addr).map(drop)
}

fn build(state: Arc<GatewayState>, opts: &ServeOptions, active: Arc<ActiveConnections>) -> Server {
    let conf = ServerConf {
        threads: opts.threads,
        // An upper bound: `run` returns as soon as the last client connection is done.
        grace_period_seconds: Some(opts.grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let state_for_admin = state.clone();
    let header_timeout = state.config.load().server.client_header_timeout;
    let app = GuardedApp {
        inner: Arc::new(pingora::proxy::http_proxy(
            &server.configuration,
            Gateway { state },
        )),
        header_timeout,
        active,
    };
    let mut proxy = Service::new("tollgate".to_string(), app);
    match crate::tls::listener_settings(&state_for_admin, crate::tls::Listener::Public) {
        Some(tls) => proxy.add_tls_with_settings(&opts.listen, None, tls),
        None => proxy.add_tcp(&opts.listen),
    }
    server.add_service(proxy);
    if let Some(addr) = &opts.admin_listen {
        let app = AdminApp {
            state: state_for_admin.clone(),
            token: opts.admin_token.clone(),
        };
        let mut admin = Service::new("tollgate admin".to_string(), app);
        match crate::tls::listener_settings(&state_for_admin, crate::tls::Listener::Admin) {
            Some(tls) => admin.add_tls_with_settings(addr, None, tls),
            None => admin.add_tcp(addr),
        }
        server.add_service(admin);
    }
    let billing = &state_for_admin.billing;
    if let Some(ledger) = &billing.ledger {
        let claim = billing.replica.as_ref().map(|r| ClusterClaim {
            store: billing.store.clone(),
            replica: r.clone(),
        });
        let deliverer = Deliverer::new(
            ledger.clone(),
            &state_for_admin.config.load().alerts,
            claim,
            state_for_admin.metrics.alert_deliveries.clone(),
            billing.clock.clone(),
            billing.alert_wake.clone(),
        );
        server.add_service(background_service(
            "alerts",
            AlertsService {
                state: state_for_admin.clone(),
                deliverer,
            },
        ));
    }
    if let Some(r) = &opts.reloader {
        let _ = state_for_admin.reloader.set(r.clone());
        server.add_service(background_service(
            "config reloader",
            ReloadService(r.clone()),
        ));
    }
    server
}

/// How often thresholds crossed without an alert are looked for (besides at start).
const ALERT_SWEEP: Duration = Duration::from_secs(60);

/// Claims alerts a sweep finds missing (on start, then every [`ALERT_SWEEP`]) and delivers
/// the outbox, until shutdown.
struct AlertsService {
    state: Arc<GatewayState>,
    deliverer: Deliverer,
}

#[async_trait]
impl BackgroundService for AlertsService {
    async fn start(&self, shutdown: ShutdownWatch) {
        let sweeps = async {
            loop {
                let budgets: Vec<_> = self.state.config.load().budgets.iter().cloned().collect();
                let billing = &self.state.billing;
                billing.sweep_alerts(&budgets, &self.state.metrics).await;
                tokio::time::sleep(ALERT_SWEEP).await;
            }
        };
        tokio::select! {
            _ = sweeps => {}
            _ = self.deliverer.run(shutdown) => {}
        }
    }
}

/// Runs until SIGTERM (graceful: stop accepting, let requests finish within the grace
/// period) or SIGINT/SIGQUIT. Blocks the calling thread, which must not be inside a tokio
/// runtime.
///
/// Pingora sleeps through the whole grace period after SIGTERM; this returns as soon as the
/// last client connection has been served instead (the ledger, which also holds the alert
/// outbox, is then committed and closed), leaving the sleeping server thread to the
/// process exit.
pub fn run(state: Arc<GatewayState>, opts: &ServeOptions) {
    let active = Arc::new(ActiveConnections::default());
    let server = build(state.clone(), opts, active.clone());
    let mut phases = server.watch_execution_phase();
    let pingora = std::thread::Builder::new()
        .name("tollgate-server".into())
        .spawn(move || server.run(RunArgs::default()));
    let pingora = match pingora {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the server thread.");
            return;
        }
    };
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match phases.blocking_recv() {
            Ok(ExecutionPhase::ShutdownGracePeriod) => {
                if drain(&active, opts.grace) {
                    tracing::info!("Every in-flight request finished; exiting.");
                    close_ledger(&state);
                    return;
                }
                tracing::warn!(
                    open = active.get(),
                    "Grace period over with requests still running; they are cut off."
                );
                break;
            }
            Ok(ExecutionPhase::Terminated) | Err(RecvError::Closed) => break,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
        }
    }
    let _ = pingora.join();
    close_ledger(&state);
}

/// Waits up to `grace` for every client connection to close; true when they all did.
fn drain(active: &ActiveConnections, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    loop {
        if active.get() == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Commits every ledger record still queued (after the server stopped serving).
fn close_ledger(state: &GatewayState) {
    if let Some(l) = &state.billing.ledger {
        match l.close() {
            Ok(()) => tracing::info!("Ledger flushed."),
            Err(e) => tracing::error!(error = %e, "Could not flush the ledger."),
        }
    }
}

/// A gateway running on a background thread, stopped by [`RunningGateway::stop`] or drop.
pub struct RunningGateway {
    pub addr: SocketAddr,
    /// The admin listener, when one was asked for.
    pub admin_addr: Option<SocketAddr>,
    pub state: Arc<GatewayState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct StopSignal(tokio::sync::Mutex<Option<tokio::sync::oneshot::Receiver<()>>>);

#[async_trait]
impl ShutdownSignalWatch for StopSignal {
    async fn recv(&self) -> ShutdownSignal {
        if let Some(rx) = self.0.lock().await.take() {
            let _ = rx.await;
        }
        ShutdownSignal::FastShutdown
    }
}

impl RunningGateway {
    /// Starts on `127.0.0.1` with a free port and waits until it accepts connections.
    pub fn start(state: Arc<GatewayState>, threads: usize) -> std::io::Result<RunningGateway> {
        Self::start_with(state, threads, None, None)
    }

    /// Like [`Self::start`], plus an admin listener with `admin_token` and, with a
    /// reloader, the config file watch.
    pub fn start_with(
        state: Arc<GatewayState>,
        threads: usize,
        admin_token: Option<Secret>,
        reloader: Option<Arc<Reloader>>,
    ) -> std::io::Result<RunningGateway> {
        let addr = free_port()?;
        let admin_addr = match admin_token {
            Some(_) => Some(free_port()?),
            None => None,
        };
        let opts = ServeOptions {
            listen: addr.to_string(),
            threads,
            grace: Duration::ZERO,
            admin_listen: admin_addr.map(|a| a.to_string()),
            admin_token,
            reloader,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let st = state.clone();
        let thread = std::thread::Builder::new()
            .name("tollgate-server".into())
            .spawn(move || {
                let server = build(st.clone(), &opts, Arc::default());
                server.run(RunArgs {
                    shutdown_signal: Box::new(StopSignal(tokio::sync::Mutex::new(Some(rx)))),
                });
                close_ledger(&st);
            })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        for a in std::iter::once(addr).chain(admin_addr) {
            while TcpStream::connect(a).is_err() {
                if Instant::now() > deadline {
                    return Err(std::io::Error::other("gateway did not start listening"));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(RunningGateway {
            addr,
            admin_addr,
            state,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A port that was free a moment ago (Pingora cannot report the port it bound to `:0`).
fn free_port() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    l.local_addr()
}
