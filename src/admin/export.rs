//! `GET /admin/api/export.csv?from=&to=&budget=`: this replica's ledger rows of a date
//! range as CSV (the columns of [`Ledger::export_csv`]), streamed.
//!
//! `from` and `to` are days (`YYYY-MM-DD`, both included, midnight to midnight in the
//! budget's time zone, or UTC without `budget`) or RFC 3339 instants (`to` excluded). The
//! export runs on a blocking thread that reads the SQLite cursor row by row and hands
//! 64 KiB chunks to the connection through a channel of four: memory stays constant
//! whatever the range, and a slow client slows the reader down instead of filling memory.
//! The response is `Transfer-Encoding: chunked`. A client that goes away stops the read.

use std::io::Write;

use bytes::Bytes;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use tokio::sync::mpsc;

use super::reply::{bad_param, error, no_ledger, parse_day, shift, Answer, Query};
use super::AdminApp;
use crate::ledger::Ledger;

/// Bytes per chunk handed to the connection.
const CHUNK: usize = 64 * 1024;
/// Chunks waiting between the reader and the connection.
const IN_FLIGHT: usize = 4;

/// A validated export, ready to stream.
pub struct Export {
    ledger: Ledger,
    from_ms: i64,
    to_ms: i64,
    budget: Option<String>,
    filename: String,
}

/// A point in time from a query value: a day's midnight in `tz` (the next day's with
/// `end`, so a day range includes its last day), or an RFC 3339 instant.
fn instant(raw: &str, tz: &TimeZone, end: bool) -> Option<i64> {
    if let Some(day) = parse_day(raw) {
        let day = if end { shift(day, 1) } else { day };
        return day
            .to_zoned(tz.clone())
            .ok()
            .map(|z| z.timestamp().as_millisecond());
    }
    raw.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// Keeps a file name to letters, digits, `-`, `_` and `.`.
fn safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect()
}

impl AdminApp {
    /// Validates the query into an [`Export`], or the error to answer.
    pub(super) fn export(&self, q: &Query) -> Result<Export, Answer> {
        let Some(ledger) = self.state.billing.ledger.clone() else {
            return Err(no_ledger());
        };
        let budget = q.get("budget").map(String::from);
        let cfg = self.state.config.load();
        let tz = budget
            .as_deref()
            .and_then(|b| cfg.budgets.get(b))
            .map(|b| b.timezone.clone())
            .unwrap_or(TimeZone::UTC);
        let today = self.today(budget.as_deref()).to_string();
        let from_raw = q.get("from").unwrap_or(&today).to_string();
        let to_raw = q.get("to").unwrap_or(&from_raw).to_string();
        let bad = |p: &str| {
            bad_param(
                p,
                &format!("`{p}` must be a date (YYYY-MM-DD) or an RFC 3339 time."),
            )
        };
        let from_ms = instant(&from_raw, &tz, false).ok_or_else(|| bad("from"))?;
        let to_ms = instant(&to_raw, &tz, true).ok_or_else(|| bad("to"))?;
        if from_ms >= to_ms {
            return Err(bad_param("from", "`from` must be before the end of `to`."));
        }
        let filename = format!(
            "tollgate-{}{}-{}.csv",
            budget
                .as_deref()
                .map(|b| format!("{}-", safe(b)))
                .unwrap_or_default(),
            safe(&from_raw),
            safe(&to_raw)
        );
        Ok(Export {
            ledger,
            from_ms,
            to_ms,
            budget,
            filename,
        })
    }
}

/// Hands the CSV bytes to the connection in [`CHUNK`]-sized pieces.
struct ChunkWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Export {
    /// Streams the export as the response; `false` when the connection cannot be reused
    /// (the client went away, or the read failed after the header was sent, in which case
    /// the body ends without its last chunk so the client sees it is incomplete).
    pub(super) async fn stream(self, session: &mut ServerSession) -> bool {
        let (tx, mut rx) = mpsc::channel::<Bytes>(IN_FLIGHT);
        let Export {
            ledger,
            from_ms,
            to_ms,
            budget,
            filename,
        } = self;
        let started = std::time::Instant::now();
        let reader = tokio::task::spawn_blocking(move || {
            let mut out = ChunkWriter {
                tx,
                buf: Vec::with_capacity(CHUNK),
            };
            let rows = ledger.export_csv(from_ms, to_ms, budget.as_deref(), &mut out)?;
            out.flush().map_err(crate::ledger::LedgerError::Export)?;
            Ok::<u64, crate::ledger::LedgerError>(rows)
        });
        // The header waits for the first chunk, so a query that fails at once still gets
        // a proper error status.
        let Some(first) = rx.recv().await else {
            let detail = match reader.await {
                Ok(Ok(_)) => "the export produced nothing".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(error = %detail, "CSV export failed.");
            let resp = error(
                500,
                "export_failed",
                "The export failed; see the gateway log.",
            );
            return super::write_full(session, resp).await;
        };
        if !write_header(session, &filename).await {
            return false;
        }
        let mut bytes = first.len();
        let mut client_ok = session.write_response_body(first, false).await.is_ok();
        while client_ok {
            let Some(chunk) = rx.recv().await else { break };
            bytes += chunk.len();
            client_ok = session.write_response_body(chunk, false).await.is_ok();
        }
        // Dropping the receiver makes a reader still running stop at its next chunk.
        drop(rx);
        let outcome = reader.await;
        let rows = match (client_ok, outcome) {
            (true, Ok(Ok(rows))) => rows,
            (false, _) => {
                tracing::info!(bytes, "CSV export stopped: the client went away.");
                return false;
            }
            (true, Ok(Err(e))) => {
                tracing::error!(error = %e, bytes, "CSV export failed mid-stream.");
                return false;
            }
            (true, Err(e)) => {
                tracing::error!(error = %e, bytes, "CSV export task failed.");
                return false;
            }
        };
        if session.finish_body().await.is_err() {
            return false;
        }
        tracing::info!(
            rows,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "CSV export sent."
        );
        true
    }
}

async fn write_header(session: &mut ServerSession, filename: &str) -> bool {
    let Ok(mut header) = ResponseHeader::build(200, Some(6)) else {
        return false;
    };
    let disposition = format!("attachment; filename=\"{filename}\"");
    let headers = [
        ("content-type", "text/csv; charset=utf-8"),
        ("content-disposition", disposition.as_str()),
        ("transfer-encoding", "chunked"),
        ("cache-control", "no-store"),
        ("x-tollgate-scope", "replica"),
    ];
    for (k, v) in headers {
        if header.insert_header(k, v).is_err() {
            return false;
        }
    }
    session
        .write_response_header(Box::new(header))
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_cover_midnight_to_midnight_in_the_zone_and_instants_are_exact() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        let ms = |s: &str| s.parse::<Timestamp>().unwrap().as_millisecond();
        assert_eq!(
            instant("2025-06-15", &berlin, false),
            Some(ms("2025-06-14T22:00:00Z"))
        );
        assert_eq!(
            instant("2025-06-15", &berlin, true),
            Some(ms("2025-06-15T22:00:00Z"))
        );
        assert_eq!(
            instant("2025-06-15T10:00:00Z", &berlin, true),
            Some(ms("2025-06-15T10:00:00Z"))
        );
        assert_eq!(instant("yesterday", &TimeZone::UTC, false), None);
    }

    #[test]
    fn chunks_are_sent_full_and_the_rest_on_flush() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut w = ChunkWriter {
            tx,
            buf: Vec::new(),
        };
        w.write_all(&vec![b'x'; CHUNK + 10]).unwrap();
        w.write_all(b"tail").unwrap();
        w.flush().unwrap();
        drop(w);
        let sizes: Vec<usize> =
            std::iter::from_fn(|| rx.try_recv().ok().map(|b| b.len())).collect();
        assert_eq!(sizes, [CHUNK + 10, 4]);
    }

    #[test]
    fn a_gone_client_fails_the_write() {
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let mut w = ChunkWriter {
            tx,
            buf: Vec::new(),
        };
        assert!(w.write_all(&vec![0; CHUNK]).is_err());
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(safe("a b/../c\"d"), "a_b_.._c_d");
    }
}
