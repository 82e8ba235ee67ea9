//! A header: no panic, canonical round trip, hashes and field checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::header(data);
});
