//! Rate-limit cells in Redis, shared by every replica (cluster mode).
//!
//! Taking from the cells of one request and correcting them afterwards are single Lua
//! scripts (`lua/take.lua`, `lua/adjust.lua`), so concurrent requests on any replica see
//! one exact limit. The scripts read Redis' own clock, so replicas need not agree on the
//! time. Every call is bounded by `[state] redis_timeout_ms`; after a failure the
//! connection is dropped and no new one is tried for [`RECONNECT_PAUSE`], so an outage
//! costs requests no waiting: the caller falls back as `[state] redis_failure` says.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Script};
use parking_lot::Mutex;

use super::gcra::{self, WINDOW_US};
use super::{Correction, Take, Verdict};

/// Pause between connection attempts while Redis cannot be reached.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/take.lua")));
static ADJUST: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/adjust.lua")));

/// Redis could not answer in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreachable;

/// The connection to Redis and its state.
pub struct RedisCells {
    client: ::redis::Client,
    prefix: String,
    timeout: Duration,
    link: Mutex<Link>,
}

#[derive(Default)]
struct Link {
    conn: Option<MultiplexedConnection>,
    /// No connection attempt before this instant.
    pause_until: Option<Instant>,
    /// Redis failed and has not answered since (logged once per outage).
    down: bool,
}

impl RedisCells {
    /// Prepares the client; it connects on first use. Only a malformed URL is an error.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisCells, String> {
        let client = ::redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(RedisCells {
            client,
            prefix: prefix.to_string(),
            timeout,
            link: Mutex::new(Link::default()),
        })
    }

    /// The Redis key of a cell. The budget name is the hash tag, so all cells of one
    /// request live in one slot of a Redis Cluster.
    pub fn key(&self, cell: &str, budget: &str) -> String {
        format!("{}:ratelimit:{{{budget}}}:{cell}", self.prefix)
    }

    /// Takes from the cells (named by their Redis keys) all or nothing, like
    /// [`super::local::LocalCells::take`], with the arithmetic of `gcra.rs`.
    pub async fn take(&self, takes: &[Take<'_>]) -> Result<(bool, Vec<Verdict>), Unreachable> {
        let mut inv = TAKE.prepare_invoke();
        for t in takes {
            inv.key(t.name);
        }
        inv.arg(WINDOW_US);
        for t in takes {
            inv.arg(gcra::increment(t.limit, t.cost));
        }
        let reply: Vec<i64> = self
            .call(|mut conn| async move { inv.invoke_async(&mut conn).await })
            .await?;
        match reply.split_first() {
            Some((ok, backlogs)) if backlogs.len() == takes.len() => {
                let ok = *ok == 1;
                let verdicts = takes
                    .iter()
                    .zip(backlogs)
                    .map(|(t, b)| gcra::verdict(t.limit, t.cost, *b, ok))
                    .collect();
                Ok((ok, verdicts))
            }
            _ => Err(Unreachable),
        }
    }

    /// Corrects each cell (Redis key, limit) by `correction`.
    pub async fn adjust(
        &self,
        cells: &[(&str, u64)],
        correction: Correction,
    ) -> Result<(), Unreachable> {
        let mut inv = ADJUST.prepare_invoke();
        for (key, _) in cells {
            inv.key(*key);
        }
        for (_, limit) in cells {
            inv.arg(gcra::delta(*limit, correction));
        }
        self.call(|mut conn| async move { inv.invoke_async::<i64>(&mut conn).await })
            .await
            .map(|_| ())
    }

    /// Runs `f` on the connection (made first if needed) within the timeout.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, Unreachable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => {
                let mut link = self.link.lock();
                if link.down {
                    link.down = false;
                    tracing::info!("Redis answers again; rate limits are shared again.");
                }
                Ok(v)
            }
            Ok(Err(e)) => Err(self.fail(&e.to_string())),
            Err(_) => Err(self.fail("timed out")),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Unreachable> {
        {
            let link = self.link.lock();
            if let Some(c) = &link.conn {
                return Ok(c.clone());
            }
            if link.pause_until.is_some_and(|t| Instant::now() < t) {
                return Err(Unreachable);
            }
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let attempt = self
            .client
            .get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(self.timeout * 2, attempt).await {
            Ok(Ok(conn)) => {
                let mut link = self.link.lock();
                link.pause_until = None;
                Ok(link.conn.get_or_insert(conn).clone())
            }
            Ok(Err(e)) => Err(self.fail(&e.to_string())),
            Err(_) => Err(self.fail("connect timed out")),
        }
    }

    fn fail(&self, error: &str) -> Unreachable {
        let mut link = self.link.lock();
        link.conn = None;
        link.pause_until = Some(Instant::now() + RECONNECT_PAUSE);
        if !link.down {
            link.down = true;
            tracing::warn!(
                error,
                "Redis unreachable for rate limits; applying [state] redis_failure."
            );
        }
        Unreachable
    }
}
