//! The wallet's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the wallet. Messages are lower-case, name the value,
/// and never contain a secret key or a password.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    #[error("invalid key name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },

    #[error(
        "key name {name:?} is reserved: it is a built-in dev account, usable without a keystore"
    )]
    ReservedName { name: String },

    #[error("a key named {name} already exists at {}; choose another name", .path.display())]
    DuplicateName { name: String, path: PathBuf },

    #[error("no key named {name} in the keystore at {}", .dir.display())]
    UnknownKey { name: String, dir: PathBuf },

    #[error(
        "{value:?} is not a dev account ({}), a key in the keystore at {} or a toy1… address",
        chain::dev::DEV_ACCOUNTS.join(", "),
        .dir.display()
    )]
    UnknownName { value: String, dir: PathBuf },

    #[error("invalid address {value:?}: {reason}")]
    InvalidAddress { value: String, reason: String },

    #[error("{value} is an address, not a key: sign with a dev account or a keystore key name")]
    AddressIsNotASigner { value: String },

    /// The AEAD tag did not verify. A wrong password and an altered file (ciphertext,
    /// nonce, salt, KDF parameters or address) look the same to the cipher.
    #[error("wrong password for key {name} (or its file {} was altered)", .path.display())]
    WrongPassword { name: String, path: PathBuf },

    #[error("keystore file {} is corrupt: {reason}", .path.display())]
    CorruptFile { path: PathBuf, reason: String },

    #[error(
        "keystore file {} has format version {version}; this wallet reads version {supported}",
        .path.display()
    )]
    UnsupportedVersion {
        path: PathBuf,
        version: u64,
        supported: u64,
    },

    #[error("keystore path {} exists but is not a directory", .path.display())]
    NotADirectory { path: PathBuf },

    #[error("the password is empty; a stored key needs a non-empty password")]
    EmptyPassword,

    #[error("password file {} is empty; put the password on its first line", .path.display())]
    EmptyPasswordFile { path: PathBuf },

    #[error("the two passwords typed for key {name} do not match")]
    PasswordMismatch { name: String },

    #[error("cannot prompt for the password of key {name}: {reason}; use a password file instead")]
    Prompt { name: String, reason: String },

    #[error("invalid scrypt parameters log_n={log_n}, r={r}, p={p}: {reason}")]
    InvalidKdfParams {
        log_n: u8,
        r: u32,
        p: u32,
        reason: String,
    },

    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    #[error("random number source failed: {reason}")]
    Random { reason: String },

    #[error("a {kind} transaction needs at least one delegate")]
    NoDelegates { kind: &'static str },

    #[error("delegate {address} is listed more than once")]
    DuplicateDelegate { address: chain::Address },

    #[error("cannot build a {kind} transaction: {reason}")]
    InvalidTx { kind: &'static str, reason: String },
}

impl WalletError {
    /// True when the user typed something wrong (a name, an address, a password, an
    /// argument) rather than the machine failing; the CLI exits with 2 for these.
    pub fn is_user_input(&self) -> bool {
        matches!(
            self,
            WalletError::InvalidName { .. }
                | WalletError::ReservedName { .. }
                | WalletError::DuplicateName { .. }
                | WalletError::UnknownKey { .. }
                | WalletError::UnknownName { .. }
                | WalletError::InvalidAddress { .. }
                | WalletError::AddressIsNotASigner { .. }
                | WalletError::WrongPassword { .. }
                | WalletError::EmptyPassword
                | WalletError::EmptyPasswordFile { .. }
                | WalletError::PasswordMismatch { .. }
                | WalletError::InvalidKdfParams { .. }
                | WalletError::NoDelegates { .. }
                | WalletError::DuplicateDelegate { .. }
                | WalletError::InvalidTx { .. }
        )
    }

    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalletError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The wallet's result type.
pub type Result<T, E = WalletError> = std::result::Result<T, E>;
