//! Replays: the LIMS (`lumiq replay`, or its command topic through the daemon) asks for
//! every stored record from a seq on to be sent again.
//!
//! Owns: [`Outbox::request_replay`] and its outcome. The publisher notices the re-queued
//! rows like any unacknowledged row.

use std::sync::atomic::Ordering;

use rusqlite::{OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::{Outbox, OutboxError, ReplayRefusal, Seq};

/// What a replay request re-queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayOutcome {
    pub requested_from_seq: Seq,
    /// First seq that will be re-sent (later than requested when older rows were pruned).
    pub from_seq: Seq,
    pub to_seq: Seq,
    /// Acknowledged rows made unacknowledged again.
    pub requeued: u64,
    /// Rows in the range that were still unacknowledged (they go out anyway).
    pub already_pending: u64,
    /// Set when rows before `from_seq` were requested but pruned after their retention.
    pub pruned_before: Option<Seq>,
}

impl Outbox {
    /// Make every stored row with seq ≥ `from_seq` unacknowledged again, so the publisher
    /// sends it again (flagged `replay`). Rows pruned after their retention cannot come back:
    /// the outcome says where the replay really starts.
    pub fn request_replay(&self, from_seq: Seq) -> Result<ReplayOutcome, OutboxError> {
        let replay_err = |detail: ReplayRefusal| OutboxError::Replay {
            path: self.path.display().to_string(),
            from_seq,
            detail,
        };
        if from_seq == 0 {
            return Err(replay_err(ReplayRefusal::SeqZero));
        }
        let mut g = self.lock();
        let outcome = (|| -> rusqlite::Result<Result<ReplayOutcome, ReplayRefusal>> {
            let tx = g
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last: Option<i64> = tx
                .query_row(
                    "SELECT seq FROM sqlite_sequence WHERE name='outbox'",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(last) = last.map(|l| l as Seq) else {
                return Ok(Err(ReplayRefusal::NeverHeld));
            };
            if from_seq > last {
                return Ok(Err(ReplayRefusal::PastLast(last)));
            }
            let oldest: Option<i64> =
                tx.query_row("SELECT MIN(seq) FROM outbox", [], |r| r.get(0))?;
            let Some(oldest) = oldest.map(|o| o as Seq) else {
                return Ok(Err(ReplayRefusal::AllPruned(last)));
            };
            let from = from_seq.max(oldest);
            let already: i64 = tx.query_row(
                "SELECT COUNT(*) FROM outbox WHERE seq >= ?1 AND acked_at_ms IS NULL",
                [from as i64],
                |r| r.get(0),
            )?;
            let requeued = tx.execute(
                "UPDATE outbox SET acked_at_ms=NULL, replay=1 WHERE seq >= ?1 AND acked_at_ms IS NOT NULL",
                [from as i64],
            )?;
            tx.commit()?;
            Ok(Ok(ReplayOutcome {
                requested_from_seq: from_seq,
                from_seq: from,
                to_seq: last,
                requeued: requeued as u64,
                already_pending: already as u64,
                pruned_before: (from_seq < oldest).then_some(oldest),
            }))
        })();
        drop(g);
        match outcome {
            Ok(Ok(o)) => {
                self.replays.fetch_add(1, Ordering::SeqCst);
                self.wake();
                Ok(o)
            }
            Ok(Err(detail)) => Err(replay_err(detail)),
            Err(e) => Err(self.storage(e)),
        }
    }
}
