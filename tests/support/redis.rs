//! A private `redis-server` per test, on a free port, without persistence, killed on drop;
//! it can be killed and restarted on the same port for fault tests. Also a relay in front
//! of it ([`FlakyLink`]) that can lose a script's reply after the script ran, or refuse
//! connections, to test what happens when a reply never arrives.
//!
//! The binary is `redis-server` from `PATH`, or `$REDIS_SERVER`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long a starting server may take to answer PING.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running (or killed) private `redis-server`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port; panics if none starts.
    pub fn start() -> Self {
        for _ in 0..5 {
            let port = free_port();
            if let Some(child) = spawn(port) {
                return RedisServer {
                    port,
                    child: Some(child),
                };
            }
        }
        panic!("redis-server did not start");
    }

    /// Starts a server on `port` (one a store was already told about); panics if it fails.
    pub fn start_on(port: u16) -> Self {
        let child = spawn(port).unwrap_or_else(|| panic!("redis-server did not start on {port}"));
        RedisServer {
            port,
            child: Some(child),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL): its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts an empty server again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if let Some(child) = spawn(self.port) {
                self.child = Some(child);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// A plain connection for reading keys directly.
    pub fn client(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Spawns a server on `port` and waits for PING; `None` if it exits or never answers.
fn spawn(port: u16) -> Option<Child> {
    let binary = std::env::var("REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
    let mut child = Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    let deadline = Instant::now() + READY_WITHIN;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return None;
        }
        if pong(port) {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn pong(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    let mut buf = [0u8; 7];
    s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
}

/// A TCP relay to a Redis server that can lose replies on purpose.
pub struct FlakyLink {
    port: u16,
    state: Arc<LinkState>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct LinkState {
    lose_next_script_reply: AtomicBool,
    down: AtomicBool,
    lost: AtomicUsize,
}

impl FlakyLink {
    /// Relays a free local port to `127.0.0.1:target`.
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(LinkState::default());
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.down.load(Ordering::SeqCst) {
                    continue; // dropped: the connection is closed at once
                }
                tokio::spawn(relay(client, target, shared.clone()));
            }
        });
        FlakyLink { port, state, task }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The next script call (EVAL/EVALSHA) reaches Redis and runs, but its reply is thrown
    /// away and the connection closed.
    pub fn lose_next_script_reply(&self) {
        self.state
            .lose_next_script_reply
            .store(true, Ordering::SeqCst);
    }

    /// Replies lost so far.
    pub fn lost(&self) -> usize {
        self.state.lost.load(Ordering::SeqCst)
    }

    /// While down, new connections are closed as soon as they are accepted.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for FlakyLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(mut client: tokio::net::TcpStream, target: u16, state: Arc<LinkState>) {
    let Ok(mut server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let (mut to_client, mut to_server) = ([0u8; 16384], [0u8; 16384]);
    let mut cutting = false;
    loop {
        tokio::select! {
            n = client.read(&mut to_server) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &to_server[..n];
                if chunk.windows(4).any(|w| w == b"EVAL")
                    && state.lose_next_script_reply.swap(false, Ordering::SeqCst)
                {
                    cutting = true;
                }
                if server.write_all(chunk).await.is_err() {
                    return;
                }
            }
            n = server.read(&mut to_client) => {
                let Ok(n @ 1..) = n else { return };
                if cutting {
                    state.lost.fetch_add(1, Ordering::SeqCst);
                    return; // both sockets close
                }
                if client.write_all(&to_client[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
