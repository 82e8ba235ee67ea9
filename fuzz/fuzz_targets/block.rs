//! A block: no panic, canonical round trip, stateless block checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::block(data);
});
