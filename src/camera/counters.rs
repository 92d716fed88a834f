//! Fault and traffic counters of one camera connection. Every fault the driver sees is
//! counted here; `lumiq status` and the capture report show a [`CameraCountersSnapshot`].

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters (shared with whoever reports them).
        #[derive(Debug, Default)]
        pub struct CameraCounters { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A copy of the counters at one moment.
        #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
        pub struct CameraCountersSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl CameraCounters {
            pub fn snapshot(&self) -> CameraCountersSnapshot {
                CameraCountersSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Verified frames handed out.
    frames_ok,
    /// Frames dropped for any reason (each also counted by its reason below).
    frames_discarded,
    /// Payloads that arrived short.
    truncated_payloads,
    /// Trailers with a status other than success.
    bad_trailer_status,
    /// Trailers or leaders with an unexpected block id.
    wrong_block_ids,
    /// Payload CRC mismatches.
    crc_errors,
    /// Other malformed stream transfers (bad leader, overrun, abandoned block).
    stream_protocol_errors,
    /// Frames whose leader did not match the settings asked for.
    mismatched_frames,
    /// Stream endpoint halts cleared.
    stalls_cleared,
    /// Frames that did not arrive by their deadline.
    frame_timeouts,
    /// USB port resets after the device stopped streaming.
    resets,
    /// Frame attempts repeated after a transient fault.
    frame_retries,
    /// Control transfers that timed out.
    control_timeouts,
    /// Control commands sent again.
    control_retries,
    /// Malformed or unexpected acknowledges.
    control_protocol_errors,
    /// Late acknowledges of earlier requests, ignored.
    stale_acks,
    /// BUSY answers from the device.
    device_busy,
    /// PENDING_ACK answers (slow operations).
    pending_acks,
    /// Times the device vanished.
    disconnects,
    /// Connection attempts while reconnecting.
    reconnect_attempts,
    /// Successful reconnections.
    reconnects,
    /// Acquisitions cancelled or aborted by the interlock.
    aborted,
}

impl CameraCounters {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}
