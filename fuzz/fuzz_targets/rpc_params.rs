//! An RPC string param (address, tx hash, block hash): no panic, and it prints as its
//! lower-case self.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    toychain_fuzz::rpc_params(data);
});
