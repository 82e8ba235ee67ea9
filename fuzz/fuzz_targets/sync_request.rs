//! A range-sync request: no panic, canonical round trip, within the limits.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::sync_request(data);
});
