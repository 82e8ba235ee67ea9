//! Where a keystore password comes from: a file, a hidden prompt, or (in tests) a value.
//!
//! Passwords live in [`Password`], which wipes its buffer on drop and never shows itself
//! in `Debug`.

use crate::error::{Result, WalletError};
use std::fmt;
use std::path::PathBuf;
use zeroize::{Zeroize, Zeroizing};

/// Longest password file read: a password is one line, so anything bigger is a mistake
/// (a key file or a binary passed by accident), not a password.
const MAX_PASSWORD_FILE_BYTES: u64 = 64 * 1024;

/// A password, wiped from memory when dropped.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    pub fn new(password: impl Into<String>) -> Password {
        Password(Zeroizing::new(password.into()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<hidden>)")
    }
}

/// Where to get the password of a keystore key.
pub enum PasswordSource {
    /// The first line of a file, without its line ending (`\n` or `\r\n`). Other
    /// whitespace is kept: it may be part of the password.
    File(PathBuf),
    /// A hidden prompt on the terminal (asked twice when creating a key).
    Prompt,
    /// A fixed value, for tests and embedding. Wiped on drop.
    Value(String),
}

impl PasswordSource {
    /// The password to unlock the existing key `name`.
    pub fn for_unlock(&self, name: &str) -> Result<Password> {
        match self {
            PasswordSource::File(path) => read_password_file(path),
            PasswordSource::Prompt => prompt(name, &format!("password for key {name}: ")),
            PasswordSource::Value(value) => Ok(Password::new(value.as_str())),
        }
    }

    /// The password for a new key `name`: never empty; a prompt asks twice.
    pub fn for_create(&self, name: &str) -> Result<Password> {
        let password = match self {
            PasswordSource::Prompt => {
                let first = prompt(name, &format!("new password for key {name}: "))?;
                if first.is_empty() {
                    return Err(WalletError::EmptyPassword);
                }
                let second = prompt(name, &format!("repeat the password for key {name}: "))?;
                if *first.0 != *second.0 {
                    return Err(WalletError::PasswordMismatch {
                        name: name.to_owned(),
                    });
                }
                first
            }
            other => other.for_unlock(name)?,
        };
        if password.is_empty() {
            return Err(WalletError::EmptyPassword);
        }
        Ok(password)
    }
}

impl fmt::Debug for PasswordSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordSource::File(path) => f.debug_tuple("File").field(path).finish(),
            PasswordSource::Prompt => f.write_str("Prompt"),
            PasswordSource::Value(_) => f.write_str("Value(<hidden>)"),
        }
    }
}

impl Drop for PasswordSource {
    fn drop(&mut self) {
        if let PasswordSource::Value(value) = self {
            value.zeroize();
        }
    }
}

fn prompt(name: &str, text: &str) -> Result<Password> {
    rpassword::prompt_password(text)
        .map(Password::new)
        .map_err(|e| WalletError::Prompt {
            name: name.to_owned(),
            reason: e.to_string(),
        })
}

fn read_password_file(path: &std::path::Path) -> Result<Password> {
    let io_err = |e| WalletError::io("read password file", path, e);
    let len = std::fs::metadata(path).map_err(io_err)?.len();
    if len > MAX_PASSWORD_FILE_BYTES {
        return Err(WalletError::io(
            "read password file",
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "it is {len} bytes; a password file holds one line (at most {MAX_PASSWORD_FILE_BYTES} bytes)"
                ),
            ),
        ));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(io_err)?);
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        WalletError::io(
            "read password file",
            path,
            std::io::Error::new(std::io::ErrorKind::InvalidData, "it is not UTF-8 text"),
        )
    })?;
    let line = text.split('\n').next().unwrap_or_default();
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        return Err(WalletError::EmptyPasswordFile {
            path: path.to_owned(),
        });
    }
    Ok(Password::new(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pw.txt");
        std::fs::write(&path, contents).expect("write password file");
        (dir, path)
    }

    #[test]
    fn password_file_line_endings_are_trimmed_but_spaces_kept() {
        let cases: [(&[u8], &str); 5] = [
            (b"hunter2\n", "hunter2"),
            (b"hunter2", "hunter2"),
            (b"hunter2\r\n", "hunter2"),
            (b"two words \nsecond line ignored\n", "two words "),
            (b"p\xc3\xa4ss\n", "päss"),
        ];
        for (contents, expected) in cases {
            let (_dir, path) = file_with(contents);
            let password = PasswordSource::File(path)
                .for_unlock("k")
                .expect("password read");
            assert_eq!(password.as_bytes(), expected.as_bytes(), "{contents:?}");
        }
    }

    #[test]
    fn empty_password_file_is_refused_with_its_path() {
        for contents in [&b""[..], b"\n", b"\r\n", b"\nsecond line"] {
            let (_dir, path) = file_with(contents);
            let err = PasswordSource::File(path.clone())
                .for_unlock("k")
                .expect_err("empty file refused");
            assert!(
                matches!(&err, WalletError::EmptyPasswordFile { path: p } if *p == path),
                "{err:?}"
            );
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }

    #[test]
    fn missing_or_binary_password_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let missing = dir.path().join("nope.txt");
        let err = PasswordSource::File(missing.clone())
            .for_unlock("k")
            .expect_err("missing file");
        assert!(err.to_string().contains("nope.txt"), "{err}");

        let (_dir, path) = file_with(b"\xff\xfe\n");
        let err = PasswordSource::File(path)
            .for_unlock("k")
            .expect_err("not utf-8");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }

    #[test]
    fn creating_with_an_empty_value_is_refused() {
        let err = PasswordSource::Value(String::new())
            .for_create("k")
            .expect_err("empty password");
        assert!(matches!(err, WalletError::EmptyPassword), "{err:?}");
        // Unlocking with an empty value is allowed to reach the cipher (which refuses it).
        assert!(PasswordSource::Value(String::new()).for_unlock("k").is_ok());
    }

    #[test]
    fn debug_hides_passwords() {
        let source = PasswordSource::Value("correct horse".into());
        assert_eq!(format!("{source:?}"), "Value(<hidden>)");
        let password = source.for_unlock("k").expect("value");
        assert_eq!(format!("{password:?}"), "Password(<hidden>)");
    }
}
