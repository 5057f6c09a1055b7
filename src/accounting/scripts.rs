//! The Redis side of [`RedisStore`](super::RedisStore): key names, the Lua scripts (in
//! `lua/`, run with EVALSHA) and their replies.
//!
//! Keys: `{prefix}:budget:{budget}:{day}` is a hash holding the day's counters (`spent`,
//! `reserved`), its generation, each replica's part of spent and one field per
//! reservation (`h:<id>`: the amount held, then `x` once settled or released, until the
//! hash expires). `{prefix}:alert:{budget}:{day}:{threshold}` holds the token of the alert
//! claim. Both expire [`KEY_TTL`] after their last write.
//!
//! Every budget script touches one key, so the scripts also run on a Redis Cluster. Lua
//! numbers are doubles: the limit check and the floor are exact below 2^53 nano-dollars
//! (about nine million dollars); the counters themselves are updated with HINCRBY, exact
//! to 2^63.

use std::sync::LazyLock;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{ErrorKind, RedisError, RedisResult, Script, Value};

use super::shadow::Gen;
use super::Snapshot;

/// How long a budget-day hash and an alert claim live after their last write.
pub const KEY_TTL: Duration = Duration::from_secs(4 * 24 * 3600);

macro_rules! budget_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/prelude.lua"),
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static RESERVE: LazyLock<Script> = budget_script!("reserve.lua");
static SETTLE: LazyLock<Script> = budget_script!("settle.lua");
static RELEASE: LazyLock<Script> = budget_script!("release.lua");
static FLOOR: LazyLock<Script> = budget_script!("floor.lua");
static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/claim.lua")));

/// Key names under one prefix.
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub fn budget(&self, budget: &str, day: &str) -> String {
        format!("{}:budget:{budget}:{day}", self.prefix)
    }

    pub fn alert(&self, budget: &str, day: &str, threshold: u32) -> String {
        format!("{}:alert:{budget}:{day}:{threshold}", self.prefix)
    }
}

/// Which part of a replica's spent a floor raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloorMode {
    /// What the replica restores after the hash was lost.
    Carry,
    /// The replica's whole part, compared with its ledger.
    Share,
}

/// One budget script call.
#[derive(Clone, Copy, Debug)]
pub enum BudgetOp<'a> {
    Reserve {
        id: &'a str,
        amount: u64,
        limit: u64,
        enforce: bool,
    },
    Settle {
        id: &'a str,
        actual: u64,
        replica: &'a str,
    },
    Release {
        id: &'a str,
    },
    Floor {
        expected: Option<&'a Gen>,
        replica: &'a str,
        target: u64,
        mode: FloorMode,
    },
}

/// What a budget script did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Already applied for this reservation id: nothing written.
    Dup,
    /// The reservation does not fit the limit: nothing held.
    Exceeded,
    /// The hash is not of the expected generation: nothing written.
    Moved,
}

/// A budget script's reply: the status and the hash's counters afterwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub snap: Snapshot,
    pub gen: Gen,
    pub spent_before: u64,
}

/// Runs `op` on the hash `key`; `known` is the newest generation seen for it.
pub async fn budget(
    conn: &mut MultiplexedConnection,
    key: &str,
    known: Option<&Gen>,
    op: BudgetOp<'_>,
) -> RedisResult<Reply> {
    let ttl = KEY_TTL.as_secs();
    let known = known.map_or("", |g| g.0.as_str());
    let value: Value = match op {
        BudgetOp::Reserve {
            id,
            amount,
            limit,
            enforce,
        } => {
            let enforce = if enforce { "1" } else { "0" };
            RESERVE
                .key(key)
                .arg(ttl)
                .arg(known)
                .arg(id)
                .arg(amount)
                .arg(limit)
                .arg(enforce)
                .invoke_async(conn)
                .await?
        }
        BudgetOp::Settle {
            id,
            actual,
            replica,
        } => {
            SETTLE
                .key(key)
                .arg(ttl)
                .arg(known)
                .arg(id)
                .arg(actual)
                .arg(replica)
                .invoke_async(conn)
                .await?
        }
        BudgetOp::Release { id } => {
            RELEASE
                .key(key)
                .arg(ttl)
                .arg(known)
                .arg(id)
                .invoke_async(conn)
                .await?
        }
        BudgetOp::Floor {
            expected,
            replica,
            target,
            mode,
        } => {
            let mode = match mode {
                FloorMode::Carry => "carry",
                FloorMode::Share => "share",
            };
            FLOOR
                .key(key)
                .arg(ttl)
                .arg(known)
                .arg(expected.map_or("", |g| g.0.as_str()))
                .arg(replica)
                .arg(target)
                .arg(mode)
                .invoke_async(conn)
                .await?
        }
    };
    parse_reply(value)
}

/// Claims alert key `key` for `token`: true when it is (now or already) held by `token`.
pub async fn claim(conn: &mut MultiplexedConnection, key: &str, token: &str) -> RedisResult<bool> {
    let won: i64 = CLAIM
        .key(key)
        .arg(token)
        .arg(KEY_TTL.as_secs())
        .invoke_async(conn)
        .await?;
    Ok(won == 1)
}

/// The hash's counters and generation, without creating it (zero and `None` when absent).
pub async fn read(
    conn: &mut MultiplexedConnection,
    key: &str,
) -> RedisResult<(Snapshot, Option<Gen>)> {
    let fields: Vec<Option<String>> = ::redis::cmd("HMGET")
        .arg(key)
        .arg("spent")
        .arg("reserved")
        .arg("gen")
        .query_async(conn)
        .await?;
    let field = |i: usize| fields.get(i).cloned().flatten();
    let snap = Snapshot {
        spent: counter(field(0).as_deref())?,
        reserved: counter(field(1).as_deref())?,
    };
    Ok((snap, field(2).map(Gen)))
}

/// The server's run id (changes when Redis restarts); `None` when `INFO` is refused (ACLs).
pub async fn run_id(conn: &mut MultiplexedConnection) -> RedisResult<Option<String>> {
    let info: String = match ::redis::cmd("INFO").arg("server").query_async(conn).await {
        Ok(info) => info,
        Err(e) if matches!(e.kind(), ErrorKind::Server(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|s| s.trim().to_string()))
}

fn parse_reply(value: Value) -> RedisResult<Reply> {
    let fields: Vec<Option<String>> = ::redis::from_redis_value(value)?;
    let [status, spent, reserved, gen, before] = fields.as_slice() else {
        return Err(malformed(format!("{} fields", fields.len())));
    };
    let status = match status.as_deref() {
        Some("ok") => Status::Ok,
        Some("dup") => Status::Dup,
        Some("exceeded") => Status::Exceeded,
        Some("moved") => Status::Moved,
        other => return Err(malformed(format!("status {other:?}"))),
    };
    let gen = gen
        .clone()
        .ok_or_else(|| malformed("no generation".into()))?;
    Ok(Reply {
        status,
        snap: Snapshot {
            spent: counter(spent.as_deref())?,
            reserved: counter(reserved.as_deref())?,
        },
        gen: Gen(gen),
        spent_before: counter(before.as_deref())?,
    })
}

/// A counter field: absent is 0, and a negative value (never written by these scripts)
/// reads as 0.
fn counter(field: Option<&str>) -> RedisResult<u64> {
    match field {
        None => Ok(0),
        Some(s) => s
            .parse::<i64>()
            .map(|v| v.max(0) as u64)
            .map_err(|_| malformed(format!("counter {s:?}"))),
    }
}

fn malformed(detail: String) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected budget script reply",
        detail,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reply_reads_status_counters_and_generation() {
        let v = Value::Array(vec![
            bulk("ok"),
            bulk("1500"),
            bulk("300"),
            bulk("1763700000000001"),
            bulk("1000"),
        ]);
        let r = parse_reply(v).unwrap();
        assert_eq!(r.status, Status::Ok);
        assert_eq!(
            r.snap,
            Snapshot {
                spent: 1500,
                reserved: 300
            }
        );
        assert_eq!(r.gen, Gen("1763700000000001".into()));
        assert_eq!(r.spent_before, 1000);
    }

    #[test]
    fn reply_with_unknown_status_is_an_error() {
        let v = Value::Array(vec![
            bulk("maybe"),
            bulk("0"),
            bulk("0"),
            bulk("1"),
            bulk("0"),
        ]);
        assert!(parse_reply(v).is_err());
    }

    #[test]
    fn keys_follow_the_documented_names() {
        let k = Keys::new("tollgate");
        assert_eq!(
            k.budget("team-a", "2026-11-21"),
            "tollgate:budget:team-a:2026-11-21"
        );
        assert_eq!(
            k.alert("team-a", "2026-11-21", 80),
            "tollgate:alert:team-a:2026-11-21:80"
        );
    }
}
