//! The wallet as the CLI uses it: a keystore in a temp directory, cheap scrypt parameters
//! except in the one test that shows the default cost works.

mod keystore;
mod resolve;

use std::path::Path;
use wallet::{KdfParams, Keystore, Password};

/// A keystore in a fresh temp directory, with near-free KDF parameters.
pub fn temp_keystore() -> (tempfile::TempDir, Keystore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Keystore::open(dir.path().join("keystore"))
        .expect("open keystore")
        .with_kdf_params(KdfParams::for_tests());
    (dir, store)
}

pub fn pw(s: &str) -> Password {
    Password::new(s)
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}
