//! A signed transaction: no panic, canonical round trip, hashing and stateless checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::tx(data);
});
