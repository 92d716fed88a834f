//! Fuzz the status socket's request line (`lumiq status`, `lumiq acquire`): any line
//! through `daemon::socket::parse_request`, then the acquisition request's checks.
//! Invariants: no panic; a request that parses writes back to JSON that parses to the
//! same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lumiq::daemon::socket::{parse_request, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(req) = parse_request(line) else {
        return;
    };
    if let Request::Acquire(a) = &req {
        let _ = a.validate();
    }
    let again = parse_request(&serde_json::to_string(&req).unwrap()).expect("re-parses");
    assert_eq!(again, req);
});
