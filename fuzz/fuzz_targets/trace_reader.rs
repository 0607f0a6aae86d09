//! Any bytes given to the trace reader give records or an error, never a panic, a hang or
//! an unbounded allocation. Run: `cargo fuzz run trace_reader` (nightly).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lt::capture::trace::read_all(data);
});
