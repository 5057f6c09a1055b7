//! Opening the billing state a served gateway uses, from `[state]`: the SQLite ledger in
//! the data directory, and the budget store — in-process counters rebuilt from the ledger,
//! or Redis shared with the other replicas.

use std::path::Path;
use std::sync::Arc;

use tokio::sync::Notify;

use super::Billing;
use crate::accounting::{BudgetStore, FailurePolicy, LocalStore, RedisOptions, RedisStore};
use crate::clock::Clock;
use crate::config::{Backend, Config, RedisFailure};
use crate::ledger::{Ledger, LedgerOptions};

pub use crate::ledger::FILE_NAME as LEDGER_FILE;
/// File holding this replica's id (cluster mode), so alert claims survive restarts.
const REPLICA_FILE: &str = "replica-id";

impl Billing {
    /// Opens the ledger and the store named by `config.state`. Must run inside the tokio
    /// runtime that will drive the store's connections for the life of the gateway.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Billing, String> {
        let st = &config.state;
        std::fs::create_dir_all(&st.data_dir).map_err(|e| {
            format!(
                "cannot create the data directory {}: {e}",
                st.data_dir.display()
            )
        })?;
        let ledger = Ledger::open(
            &st.data_dir.join(LEDGER_FILE),
            LedgerOptions {
                flush_interval: st.flush_interval(),
                ..LedgerOptions::default()
            },
        )
        .map_err(|e| format!("cannot open the ledger: {e}"))?;
        let (store, replica): (Arc<dyn BudgetStore>, _) = match st.backend {
            Backend::Embedded => (Arc::new(LocalStore::new()), None),
            Backend::Redis => {
                let replica = replica_id(&st.data_dir)?;
                let store = RedisStore::connect(RedisOptions {
                    url: st.redis_url.clone(),
                    key_prefix: st.redis_key_prefix.clone(),
                    op_timeout: st.redis_timeout(),
                    failure_policy: match st.redis_failure {
                        RedisFailure::FailOpen => FailurePolicy::FailOpen,
                        RedisFailure::FailClosed => FailurePolicy::FailClosed,
                    },
                    replica: replica.clone(),
                    ..RedisOptions::new(st.redis_url.clone())
                })
                .await
                .map_err(|e| format!("cannot use Redis at {}: {e}", redact(&st.redis_url)))?;
                (Arc::new(store), Some(replica))
            }
        };
        let billing = Billing {
            store,
            ledger: Some(ledger),
            clock,
            replica,
            alert_wake: Arc::new(Notify::new()),
            dashboard_url: config.alerts.dashboard_url.clone(),
        };
        // Embedded: today's counters are the ledger's sums. Redis: this replica's share of
        // each budget is raised to its ledger's figure (restoring it if Redis lost it).
        let budgets: Vec<_> = config.budgets.iter().cloned().collect();
        billing.rebuild_from_ledger(&budgets).await?;
        Ok(billing)
    }
}

/// This replica's id: read from the data directory, or created there once.
fn replica_id(dir: &Path) -> Result<String, String> {
    let path = dir.join(REPLICA_FILE);
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tollgate".into());
    let id = format!("{host}-{:016x}", fastrand::u64(..));
    std::fs::write(&path, &id).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(id)
}

/// A Redis URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}
