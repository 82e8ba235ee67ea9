//! A header's engine data (first byte: DPoS evidence or PoS stake proof): no panic,
//! canonical round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::engine_data(data);
});
