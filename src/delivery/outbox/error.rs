//! [`OutboxError`]: what the outbox refuses or fails at, naming its file and the remedy;
//! [`ReplayRefusal`]: why a replay cannot start where it was asked to.

use super::{FullReason, Seq};

/// What went wrong with the outbox. Messages name its file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: full ({}); {unacked} records are waiting for the broker and all are kept; new acquisitions are refused until {}", describe_full(reason), remedy_full(reason))]
    Full {
        path: String,
        reason: FullReason,
        unacked: u64,
    },
    #[error("outbox {path}: holds records of instrument {outbox:?}, not {record:?}; give each instrument its own outbox file")]
    WrongInstrument {
        path: String,
        outbox: String,
        record: String,
    },
    #[error("outbox {path}: {detail}")]
    Storage { path: String, detail: String },
    #[error("outbox {path}: replay from seq {from_seq}: {detail}")]
    Replay {
        path: String,
        from_seq: Seq,
        detail: ReplayRefusal,
    },
}

/// Why a replay cannot start where it was asked to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReplayRefusal {
    #[error("seqs start at 1")]
    SeqZero,
    #[error("the outbox has never held a record")]
    NeverHeld,
    #[error("the last seq committed is {0}")]
    PastLast(Seq),
    #[error("every record up to seq {0} was pruned after its retention")]
    AllPruned(Seq),
}

fn describe_full(r: &FullReason) -> String {
    match r {
        FullReason::UnackedCap { cap } => {
            format!("{cap} unacknowledged records, the configured cap")
        }
        FullReason::Disk => "no space left for the database".into(),
    }
}

fn remedy_full(r: &FullReason) -> &'static str {
    match r {
        FullReason::UnackedCap { .. } => {
            "the broker acknowledges records again (check `lumiq status`: broker link)"
        }
        FullReason::Disk => "space is freed on the outbox's disk (or its size cap is raised)",
    }
}
