//! A range-sync response: no panic, canonical round trip, and the blocks or headers in it.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::sync_response(data);
});
