//! The encrypted keystore: one JSON file per key, `NAME.json`, in one directory.
//!
//! A key file (format version 1) looks like this:
//!
//! ```json
//! {
//!   "version": 1,
//!   "address": "toy1…",
//!   "kdf": { "name": "scrypt", "log_n": 15, "r": 8, "p": 1, "salt": "<32 bytes hex>" },
//!   "cipher": { "name": "xchacha20-poly1305", "nonce": "<24 bytes hex>" },
//!   "ciphertext": "<48 bytes hex: the 32-byte secret key and the 16-byte tag>"
//! }
//! ```
//!
//! The encryption key is `scrypt(password, salt, N = 2^log_n, r, p)`, 32 bytes. The secret
//! key is sealed with XChaCha20-Poly1305 under a random 192-bit nonce (random nonces of
//! that size never collide in practice), with associated data
//! `"toychain/keystore/v1:" ‖ address`. So the tag checks the password, the ciphertext,
//! and the address in clear: moving a ciphertext into another key's file, or editing the
//! address so `list` shows a different one, fails to decrypt. Changing the salt or the KDF
//! parameters changes the derived key and fails the same way.
//!
//! The address is in clear so `list` and `address` need no password. Files are created
//! with mode 0600 in a 0700 directory and never overwritten.

use crate::error::{Result, WalletError};
use crate::password::Password;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chain::dev::DEV_ACCOUNTS;
use chain::{Address, SecretKey};
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The key file format this wallet writes and reads.
pub const KEYSTORE_VERSION: u64 = 1;
/// Name of the KDF in key files.
pub const KDF_NAME: &str = "scrypt";
/// Name of the AEAD in key files.
pub const CIPHER_NAME: &str = "xchacha20-poly1305";
/// Longest key name.
pub const MAX_NAME_LEN: usize = 32;

const SALT_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const SECRET_LEN: usize = 32;
const TAG_LEN: usize = 16;
const AAD_DOMAIN: &str = "toychain/keystore/v1:";
/// A key file is a few hundred bytes; refuse to read anything much bigger.
const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Bounds on parameters read from a file, so a corrupt or hostile file cannot make
/// unlocking take hours or gigabytes: at most N = 2^20 and 1 GiB of scrypt memory.
const MAX_LOG_N: u8 = 20;
const MAX_R: u32 = 32;
const MAX_P: u32 = 16;
const MAX_KDF_MEMORY: u64 = 1 << 30;

/// scrypt cost parameters: N = 2^log_n iterations over 128·r·N bytes of memory, p lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfParams {
    log_n: u8,
    r: u32,
    p: u32,
}

impl KdfParams {
    /// What new keys use: N = 2^15, r = 8, p = 1, i.e. 32 MiB of memory — the
    /// interactive-login cost Go's `x/crypto/scrypt` recommends (2017), about 0.13 s per
    /// unlock with an optimised scrypt on a 2-core dev machine (2–3 s in an unoptimised
    /// debug build). Anyone holding the file pays the same per password guess.
    pub const DEFAULT: KdfParams = KdfParams {
        log_n: 15,
        r: 8,
        p: 1,
    };

    /// Checked parameters: 1 ≤ log_n ≤ 20, 1 ≤ r ≤ 32, 1 ≤ p ≤ 16, memory ≤ 1 GiB.
    pub fn new(log_n: u8, r: u32, p: u32) -> Result<KdfParams> {
        let err = |reason: String| WalletError::InvalidKdfParams {
            log_n,
            r,
            p,
            reason,
        };
        if !(1..=MAX_LOG_N).contains(&log_n) {
            return Err(err(format!("log_n must be between 1 and {MAX_LOG_N}")));
        }
        if !(1..=MAX_R).contains(&r) {
            return Err(err(format!("r must be between 1 and {MAX_R}")));
        }
        if !(1..=MAX_P).contains(&p) {
            return Err(err(format!("p must be between 1 and {MAX_P}")));
        }
        let params = KdfParams { log_n, r, p };
        if params.memory_bytes() > MAX_KDF_MEMORY {
            return Err(err(format!(
                "needs {} bytes of memory, more than the limit of {MAX_KDF_MEMORY}",
                params.memory_bytes()
            )));
        }
        Ok(params)
    }

    /// Almost free parameters (N = 16) so tests do not spend seconds in scrypt. Never for
    /// real keys: a file made with these falls to a password guesser at once.
    #[cfg(any(test, feature = "test-utils"))]
    pub const fn for_tests() -> KdfParams {
        KdfParams {
            log_n: 4,
            r: 8,
            p: 1,
        }
    }

    pub fn log_n(&self) -> u8 {
        self.log_n
    }

    pub fn r(&self) -> u32 {
        self.r
    }

    pub fn p(&self) -> u32 {
        self.p
    }

    /// scrypt's working memory, 128·r·N bytes.
    pub fn memory_bytes(&self) -> u64 {
        (128 * u64::from(self.r)) << self.log_n
    }

    /// The 32-byte encryption key for `password` and `salt`, wiped on drop.
    fn derive(&self, password: &Password, salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let params = scrypt::Params::new(self.log_n, self.r, self.p).map_err(|e| {
            WalletError::InvalidKdfParams {
                log_n: self.log_n,
                r: self.r,
                p: self.p,
                reason: e.to_string(),
            }
        })?;
        let mut key = Zeroizing::new([0u8; 32]);
        scrypt::scrypt(password.as_bytes(), salt, &params, key.as_mut())
            .expect("a 32-byte output is within scrypt's output length limits");
        Ok(key)
    }
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams::DEFAULT
    }
}

/// An encrypted keystore directory.
#[derive(Clone, Debug)]
pub struct Keystore {
    dir: PathBuf,
    kdf: KdfParams,
}

impl Keystore {
    /// The keystore in `dir`. Nothing is created until the first key is stored; a
    /// missing directory is an empty keystore.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Keystore> {
        let dir = dir.into();
        match fs::metadata(&dir) {
            Ok(meta) if !meta.is_dir() => return Err(WalletError::NotADirectory { path: dir }),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(WalletError::io("open keystore", dir, e)),
        }
        Ok(Keystore {
            dir,
            kdf: KdfParams::DEFAULT,
        })
    }

    /// Use `params` for keys made by [`Keystore::generate`] (default [`KdfParams::DEFAULT`]).
    pub fn with_kdf_params(mut self, params: KdfParams) -> Keystore {
        self.kdf = params;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn kdf_params(&self) -> KdfParams {
        self.kdf
    }

    /// The file that holds (or would hold) key `name`.
    pub fn path_of(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.file_path(name))
    }

    /// Whether a key named `name` is stored (false for invalid names).
    pub fn contains(&self, name: &str) -> bool {
        validate_name(name).is_ok() && self.file_path(name).is_file()
    }

    /// Stores `key` under `name`, encrypted with `password` at cost `params`. Refuses an
    /// invalid or reserved name, an existing name and an empty password.
    pub fn create(
        &self,
        name: &str,
        key: &SecretKey,
        password: &Password,
        params: &KdfParams,
    ) -> Result<Address> {
        validate_name(name)?;
        if password.is_empty() {
            return Err(WalletError::EmptyPassword);
        }
        let path = self.file_path(name);
        // Checked again atomically on create; this spares a second of scrypt on a typo.
        if path.exists() {
            return Err(WalletError::DuplicateName {
                name: name.to_owned(),
                path,
            });
        }
        let address = key.address();
        let contents = seal(key, &address, password, params)?;
        self.ensure_dir()?;
        write_new_file(name, &path, &contents)?;
        Ok(address)
    }

    /// Makes a fresh random key, stores it under `name` at this keystore's KDF cost and
    /// returns its address.
    pub fn generate(&self, name: &str, password: &Password) -> Result<Address> {
        validate_name(name)?;
        let key = SecretKey::generate().map_err(|e| WalletError::Random {
            reason: e.to_string(),
        })?;
        self.create(name, &key, password, &self.kdf)
    }

    /// Decrypts key `name`.
    pub fn load(&self, name: &str, password: &Password) -> Result<SecretKey> {
        validate_name(name)?;
        let path = self.file_path(name);
        let file = self.read(name, &path)?;
        unseal(name, &path, &file, password)
    }

    /// Every stored key, sorted by name, with its address; no password needed. Files
    /// that are not `NAME.json` with a valid name (editor backups, notes) are ignored; a
    /// corrupt key file is an error naming it.
    pub fn list(&self) -> Result<Vec<(String, Address)>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(WalletError::io("list keystore", &self.dir, e)),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| WalletError::io("list keystore", &self.dir, e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str().and_then(|f| f.strip_suffix(".json")) else {
                continue;
            };
            if validate_name(name).is_err() {
                continue;
            }
            let path = entry.path();
            if !path.is_file() {
                continue;
            }
            let file = self.read(name, &path)?;
            keys.push((name.to_owned(), file.address));
        }
        keys.sort();
        Ok(keys)
    }

    /// The address of key `name`, read from its file without decrypting.
    pub fn address(&self, name: &str) -> Result<Address> {
        validate_name(name)?;
        let path = self.file_path(name);
        Ok(self.read(name, &path)?.address)
    }

    fn file_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn read(&self, name: &str, path: &Path) -> Result<ParsedKeyFile> {
        let bytes = read_limited(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => WalletError::UnknownKey {
                name: name.to_owned(),
                dir: self.dir.clone(),
            },
            _ => WalletError::io("read keystore file", path, e),
        })?;
        parse_key_file(path, &bytes)
    }

    /// Creates the keystore directory (0700 on Unix) when it is missing.
    fn ensure_dir(&self) -> Result<()> {
        if self.dir.is_dir() {
            return Ok(());
        }
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(&self.dir)
            .map_err(|e| WalletError::io("create keystore directory", &self.dir, e))
    }
}

/// Checks a key name: 1–32 of `a-z 0-9 _ -`, not a dev account, not `toy1…`.
pub fn validate_name(name: &str) -> Result<()> {
    let invalid = |reason| WalletError::InvalidName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("a name needs at least one character"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("a name has at most 32 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(invalid(
            "use only lower-case letters a-z, digits 0-9, '_' and '-'",
        ));
    }
    if name.starts_with("toy1") {
        // Wherever a name is accepted an address is too; this keeps the two apart.
        return Err(invalid(
            "a name must not start with \"toy1\", like an address",
        ));
    }
    if DEV_ACCOUNTS.contains(&name) {
        return Err(WalletError::ReservedName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// The JSON layout of a key file.
#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u64,
    address: String,
    kdf: KdfSection,
    cipher: CipherSection,
    ciphertext: String,
}

#[derive(Serialize, Deserialize)]
struct KdfSection {
    name: String,
    log_n: u8,
    r: u32,
    p: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
struct CipherSection {
    name: String,
    nonce: String,
}

#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// A key file whose every field has been checked, still encrypted.
struct ParsedKeyFile {
    address: Address,
    kdf: KdfParams,
    salt: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

fn associated_data(address: &Address) -> Vec<u8> {
    format!("{AAD_DOMAIN}{address}").into_bytes()
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| WalletError::Random {
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Encrypts `key` into the bytes of a key file.
fn seal(
    key: &SecretKey,
    address: &Address,
    password: &Password,
    params: &KdfParams,
) -> Result<Vec<u8>> {
    let salt: [u8; SALT_LEN] = random_bytes()?;
    let nonce: [u8; NONCE_LEN] = random_bytes()?;
    let enc_key = params.derive(password, &salt)?;
    let cipher = XChaCha20Poly1305::new_from_slice(enc_key.as_ref())
        .expect("the derived key is 32 bytes, XChaCha20-Poly1305's key size");
    let secret = Zeroizing::new(key.to_bytes());
    let aad = associated_data(address);
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret.as_ref(),
                aad: &aad,
            },
        )
        .expect("encrypting 32 bytes is far below XChaCha20-Poly1305's message limit");
    let file = KeyFile {
        version: KEYSTORE_VERSION,
        address: address.to_string(),
        kdf: KdfSection {
            name: KDF_NAME.to_owned(),
            log_n: params.log_n,
            r: params.r,
            p: params.p,
            salt: hex::encode(salt),
        },
        cipher: CipherSection {
            name: CIPHER_NAME.to_owned(),
            nonce: hex::encode(nonce),
        },
        ciphertext: hex::encode(ciphertext),
    };
    let mut bytes = serde_json::to_vec_pretty(&file)
        .expect("a struct of strings and integers always serializes");
    bytes.push(b'\n');
    Ok(bytes)
}

/// Decrypts a checked key file.
fn unseal(name: &str, path: &Path, file: &ParsedKeyFile, password: &Password) -> Result<SecretKey> {
    let corrupt = |reason: String| WalletError::CorruptFile {
        path: path.to_owned(),
        reason,
    };
    let enc_key = file.kdf.derive(password, &file.salt)?;
    let cipher = XChaCha20Poly1305::new_from_slice(enc_key.as_ref())
        .expect("the derived key is 32 bytes, XChaCha20-Poly1305's key size");
    let aad = associated_data(&file.address);
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &XNonce::from(file.nonce),
                Payload {
                    msg: &file.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| WalletError::WrongPassword {
                name: name.to_owned(),
                path: path.to_owned(),
            })?,
    );
    let mut bytes = Zeroizing::new([0u8; SECRET_LEN]);
    if plain.len() != SECRET_LEN {
        return Err(corrupt(format!(
            "decrypted key is {} bytes, expected {SECRET_LEN}",
            plain.len()
        )));
    }
    bytes.copy_from_slice(&plain);
    let key = SecretKey::from_bytes(&bytes)
        .map_err(|_| corrupt("decrypted key is not a valid secp256k1 secret key".to_owned()))?;
    // The tag already binds the address; this catches a file written with a wrong one.
    if key.address() != file.address {
        return Err(corrupt(format!(
            "decrypted key belongs to {}, not the stored address {}",
            key.address(),
            file.address
        )));
    }
    Ok(key)
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let len = fs::metadata(path)?.len();
    if len > MAX_FILE_BYTES {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is {len} bytes, more than a key file's limit of {MAX_FILE_BYTES}"),
        ));
    }
    fs::read(path)
}

/// Parses and checks every field of a key file, naming the file and the field on error.
fn parse_key_file(path: &Path, bytes: &[u8]) -> Result<ParsedKeyFile> {
    let corrupt = |reason: String| WalletError::CorruptFile {
        path: path.to_owned(),
        reason,
    };
    let version: VersionOnly = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(format!("not a keystore JSON file: {e}")))?;
    if version.version != KEYSTORE_VERSION {
        return Err(WalletError::UnsupportedVersion {
            path: path.to_owned(),
            version: version.version,
            supported: KEYSTORE_VERSION,
        });
    }
    let file: KeyFile =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("bad field: {e}")))?;
    let address = Address::parse(&file.address).map_err(|e| corrupt(format!("address: {e}")))?;
    if file.kdf.name != KDF_NAME {
        return Err(corrupt(format!(
            "kdf is {:?}, expected {KDF_NAME:?}",
            file.kdf.name
        )));
    }
    let kdf = KdfParams::new(file.kdf.log_n, file.kdf.r, file.kdf.p)
        .map_err(|e| corrupt(e.to_string()))?;
    let salt = decode_hex("kdf.salt", &file.kdf.salt).map_err(corrupt)?;
    if !(16..=64).contains(&salt.len()) {
        return Err(corrupt(format!(
            "kdf.salt is {} bytes, expected 16 to 64",
            salt.len()
        )));
    }
    if file.cipher.name != CIPHER_NAME {
        return Err(corrupt(format!(
            "cipher is {:?}, expected {CIPHER_NAME:?}",
            file.cipher.name
        )));
    }
    let nonce: [u8; NONCE_LEN] = decode_hex("cipher.nonce", &file.cipher.nonce)
        .map_err(corrupt)?
        .try_into()
        .map_err(|v: Vec<u8>| {
            corrupt(format!(
                "cipher.nonce is {} bytes, expected {NONCE_LEN}",
                v.len()
            ))
        })?;
    let ciphertext = decode_hex("ciphertext", &file.ciphertext).map_err(corrupt)?;
    if ciphertext.len() != SECRET_LEN + TAG_LEN {
        return Err(corrupt(format!(
            "ciphertext is {} bytes, expected {}",
            ciphertext.len(),
            SECRET_LEN + TAG_LEN
        )));
    }
    Ok(ParsedKeyFile {
        address,
        kdf,
        salt,
        nonce,
        ciphertext,
    })
}

fn decode_hex(field: &str, value: &str) -> std::result::Result<Vec<u8>, String> {
    hex::decode(value).map_err(|e| format!("{field} is not hex: {e}"))
}

/// Writes a new file with mode 0600, refusing to replace an existing one. A failed write
/// removes the partial file so the name stays free.
fn write_new_file(name: &str, path: &Path, contents: &[u8]) -> Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists => WalletError::DuplicateName {
            name: name.to_owned(),
            path: path.to_owned(),
        },
        _ => WalletError::io("create keystore file", path, e),
    })?;
    let written = (|| {
        // The umask can only clear bits of 0600, but say exactly what we mean.
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        drop(file);
        // Best effort: the write error is what the user needs to see.
        let _ = fs::remove_file(path);
        return Err(WalletError::io("write keystore file", path, e));
    }
    // Make the new directory entry durable too.
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| WalletError::io("sync keystore directory", dir, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Keystore) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Keystore::open(dir.path().join("keys"))
            .expect("open")
            .with_kdf_params(KdfParams::for_tests());
        (dir, store)
    }

    fn password(s: &str) -> Password {
        Password::new(s)
    }

    /// Rewrites one JSON field of a key file.
    fn edit(path: &Path, f: impl FnOnce(&mut serde_json::Value)) {
        let bytes = fs::read(path).expect("read key file");
        let mut value: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        f(&mut value);
        fs::write(path, serde_json::to_vec(&value).expect("json")).expect("write key file");
    }

    #[test]
    fn names_are_checked_with_the_value_in_the_message() {
        let cases = [
            ("", "at least one character"),
            ("Alice2", "lower-case"),
            ("a b", "lower-case"),
            ("../etc", "lower-case"),
            ("key.json", "lower-case"),
            ("ключ", "lower-case"),
            (&"x".repeat(33), "at most 32"),
            ("toy1abc", "toy1"),
        ];
        for (name, reason) in cases {
            let err = validate_name(name).expect_err(name);
            let shown = err.to_string();
            assert!(shown.contains(&format!("{name:?}")), "{shown}");
            assert!(shown.contains(reason), "{shown}");
        }
        for name in ["a", "my-key_2", &"z".repeat(32), "alice2", "toy"] {
            validate_name(name).expect(name);
        }
        for dev in DEV_ACCOUNTS {
            assert!(matches!(
                validate_name(dev),
                Err(WalletError::ReservedName { .. })
            ));
        }
    }

    #[test]
    fn kdf_params_are_bounded() {
        assert_eq!(KdfParams::DEFAULT.memory_bytes(), 32 * 1024 * 1024);
        assert!(KdfParams::new(15, 8, 1).is_ok());
        for (log_n, r, p) in [
            (0, 8, 1),
            (21, 1, 1),
            (10, 0, 1),
            (10, 33, 1),
            (10, 8, 0),
            (10, 8, 17),
            (20, 16, 1),
        ] {
            let err = KdfParams::new(log_n, r, p).expect_err("out of bounds");
            assert!(err.to_string().contains(&format!("log_n={log_n}")), "{err}");
        }
    }

    #[test]
    fn every_corruption_names_the_file_and_the_field() {
        let (_dir, store) = store();
        let key = SecretKey::from_seed("corruption");
        type Edit = fn(&mut serde_json::Value);
        let cases: [(Edit, &str); 10] = [
            (|v| v["kdf"]["name"] = "argon2id".into(), "kdf is"),
            (|v| v["kdf"]["log_n"] = 40.into(), "log_n must be"),
            (|v| v["kdf"]["salt"] = "zz".into(), "kdf.salt is not hex"),
            (|v| v["kdf"]["salt"] = "00".into(), "kdf.salt is 1 bytes"),
            (|v| v["cipher"]["name"] = "aes".into(), "cipher is"),
            (
                |v| v["cipher"]["nonce"] = "0011".into(),
                "cipher.nonce is 2 bytes",
            ),
            (|v| v["ciphertext"] = "00".into(), "ciphertext is 1 bytes"),
            (|v| v["address"] = "toy1nope".into(), "address"),
            (
                |v| {
                    if let Some(fields) = v.as_object_mut() {
                        fields.remove("cipher");
                    }
                },
                "bad field",
            ),
            (
                |v| *v = serde_json::Value::Array(vec![]),
                "not a keystore JSON file",
            ),
        ];
        for (i, (change, expected)) in cases.into_iter().enumerate() {
            let name = format!("k{i}");
            store
                .create(&name, &key, &password("pw"), &KdfParams::for_tests())
                .expect("create");
            let path = store.path_of(&name).expect("path");
            edit(&path, change);
            let err = store.load(&name, &password("pw")).expect_err(expected);
            let shown = err.to_string();
            assert!(matches!(err, WalletError::CorruptFile { .. }), "{shown}");
            assert!(shown.contains(&path.display().to_string()), "{shown}");
            assert!(shown.contains(expected), "{shown}");
        }
    }

    #[test]
    fn a_future_version_is_refused_by_number() {
        let (_dir, store) = store();
        store
            .create(
                "v",
                &SecretKey::from_seed("v"),
                &password("pw"),
                &KdfParams::for_tests(),
            )
            .expect("create");
        edit(&store.path_of("v").expect("path"), |v| {
            v["version"] = 2.into()
        });
        let err = store.address("v").expect_err("version 2");
        assert!(
            matches!(
                err,
                WalletError::UnsupportedVersion {
                    version: 2,
                    supported: 1,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn open_refuses_a_file_and_does_not_create_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("plain");
        fs::write(&file, b"x").expect("write");
        assert!(matches!(
            Keystore::open(&file),
            Err(WalletError::NotADirectory { .. })
        ));
        let missing = dir.path().join("not-yet");
        let store = Keystore::open(&missing).expect("open missing");
        assert_eq!(store.list().expect("list").len(), 0);
        assert!(!missing.exists());
    }

    #[cfg(unix)]
    #[test]
    fn keystore_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store();
        store.generate("k", &password("pw")).expect("generate");
        let mode = fs::metadata(store.dir()).expect("dir").permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
