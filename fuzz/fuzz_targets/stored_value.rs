//! A stored record (first byte: its type): no panic, canonical round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::stored_value(data);
});
