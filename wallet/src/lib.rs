//! toychain's wallet: an encrypted keystore, the built-in dev accounts, turning names into
//! addresses and keys, and building signed transactions. The `toychain wallet` commands
//! are a thin layer over this crate; nothing here talks to a node.
//!
//! # Keystore
//!
//! A [`Keystore`] is a directory with one file per key, `NAME.json`. Names are 1–32 of
//! `a-z 0-9 _ -`; the dev account names are reserved and so is the prefix `toy1`, so a
//! name can never be mistaken for a dev account or an address. Files are created with
//! mode 0600 (in a 0700 directory) and never overwritten.
//!
//! Each file is versioned JSON holding the address in clear (so `list` needs no
//! password), the KDF and its parameters and salt, the cipher and its nonce, and the
//! ciphertext, all binary values in hex:
//!
//! - **KDF**: scrypt. New keys use N = 2^15, r = 8, p = 1 ([`KdfParams::DEFAULT`],
//!   32 MiB, about 0.13 s per unlock when optimised), a common interactive-login cost;
//!   the parameters are stored per file, so a stronger default later does not break old
//!   files. Parameters read from a file are bounded (N ≤ 2^20, memory ≤ 1 GiB).
//! - **Cipher**: XChaCha20-Poly1305 with a random 24-byte nonce and the 32-byte scrypt
//!   output as key. The associated data is `"toychain/keystore/v1:" ‖ address`, so the
//!   clear address is authenticated: a ciphertext moved into another key's file, or an
//!   edited address, fails to decrypt exactly like a wrong password does.
//!
//! The secret key never appears on disk unencrypted, nor in any `Debug` output or error
//! message; derived keys, decrypted bytes and passwords sit in buffers wiped on drop
//! ([`zeroize`]).
//!
//! # Dev accounts
//!
//! `alice bob carol dave eve ferdie grace heidi` are always available without a keystore
//! or a password, like Substrate's `//Alice`. The secret key of dev account `name` is
//! `sha256("toychain/dev-key/" ‖ name)` read as a big-endian secp256k1 scalar (hashed
//! again in the ~2^-128 case that it is not a valid key) — see [`chain::dev`]. Anyone can
//! compute these keys: they are for dev chains only, which prefund each with 1,000,000 TOY.
//!
//! # Names
//!
//! [`resolve_address`] and [`resolve_signer`] accept a `toy1…` address (checked by its
//! bech32m checksum), a dev account name, or a keystore name, wherever the CLI asks for an
//! account.

mod build;
mod error;
mod keystore;
mod password;
mod resolve;

pub use build::{
    DEFAULT_FEE, build_propose_authority, build_register_delegate, build_transfer, build_unvote,
    build_vote,
};
pub use error::{Result, WalletError};
pub use keystore::{
    CIPHER_NAME, KDF_NAME, KEYSTORE_VERSION, KdfParams, Keystore, MAX_NAME_LEN, validate_name,
};
pub use password::{Password, PasswordSource};
pub use resolve::{resolve_address, resolve_signer};
