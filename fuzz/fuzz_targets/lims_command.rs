//! Fuzz the LIMS's command payload (the command topic): any bytes through
//! `daemon::commands::parse`. Invariants: no panic; a command accepted for an acquisition
//! is a request the daemon's own checks accept.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumiq::daemon::commands::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = parse(data) {
        if c.replay_from_seq.is_none() {
            c.as_request().validate().expect("an accepted command is a valid request");
        } else {
            assert!(c.replay_from_seq >= Some(1));
        }
    }
});
