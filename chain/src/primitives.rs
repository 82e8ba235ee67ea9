//! Small value types that carry meaning: hashes, heights, times, weights.

use borsh::{BorshDeserialize, BorshSerialize};
use std::fmt;
use std::str::FromStr;

pub use ruint::aliases::U256;

/// Declares a 32-byte hash newtype shown as hex.
///
/// `BlockHash` is shown in Bitcoin's reversed byte order (so a Bitcoin header hash prints
/// as block explorers print it); the others print in natural order.
macro_rules! hash_newtype {
    ($(#[$doc:meta])* $name:ident, reversed = $rev:expr) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
        )]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub const ZERO: Self = Self([0u8; 32]);

            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Hex in display order.
            pub fn to_hex(&self) -> String {
                let mut bytes = self.0;
                if $rev {
                    bytes.reverse();
                }
                hex::encode(bytes)
            }

            /// Parses hex in display order (an optional `0x` prefix is accepted).
            pub fn from_hex(s: &str) -> Result<Self, ParseHashError> {
                let digits = s.strip_prefix("0x").unwrap_or(s);
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(digits, &mut bytes).map_err(|_| ParseHashError {
                    kind: stringify!($name),
                    value: s.to_owned(),
                })?;
                if $rev {
                    bytes.reverse();
                }
                Ok(Self(bytes))
            }

            /// The first bytes in display order, for log lines.
            pub fn short(&self) -> String {
                self.to_hex()[..12].to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = ParseHashError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_newtype!(
    /// The hash of a block: sha256d of its 80-byte seal preimage (see [`crate::block::Header`]).
    BlockHash,
    reversed = true
);
hash_newtype!(
    /// The hash of a signed transaction: sha256d of its canonical bytes.
    TxHash,
    reversed = false
);
hash_newtype!(
    /// A generic 32-byte digest: merkle roots, state roots, signing hashes.
    Hash256,
    reversed = false
);

/// A string that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {value:?}: expected 64 hex digits")]
pub struct ParseHashError {
    pub kind: &'static str,
    pub value: String,
}

/// Height of a block above genesis (genesis is 0).
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Height(pub u64);

impl Height {
    pub const GENESIS: Height = Height(0);

    /// The next height; `None` past `u64::MAX`.
    pub fn next(self) -> Option<Height> {
        self.0.checked_add(1).map(Height)
    }

    pub fn prev(self) -> Option<Height> {
        self.0.checked_sub(1).map(Height)
    }
}

impl fmt::Display for Height {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Seconds since the Unix epoch, as in Bitcoin headers.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn saturating_add(self, secs: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The chain id inside every signed transaction: a tx signed for one chain is refused on
/// every other.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct ChainId(pub u64);

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a block adds to fork choice, and the sum along a chain. 256 bits because PoW work
/// is `2^256 / (target + 1)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Weight(pub U256);

impl Weight {
    pub const ZERO: Weight = Weight(U256::ZERO);

    pub fn from_u64(v: u64) -> Weight {
        Weight(U256::from(v))
    }

    /// Sum of two weights; saturates (no real chain comes near 2^256).
    pub fn saturating_add(self, other: Weight) -> Weight {
        Weight(self.0.saturating_add(other.0))
    }

    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    pub fn from_be_bytes(bytes: [u8; 32]) -> Weight {
        Weight(U256::from_be_bytes(bytes))
    }
}

impl fmt::Debug for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Weight({})", self.0)
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl BorshSerialize for Weight {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        writer.write_all(&self.to_be_bytes())
    }
}

impl BorshDeserialize for Weight {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let mut bytes = [0u8; 32];
        reader.read_exact(&mut bytes)?;
        Ok(Weight::from_be_bytes(bytes))
    }
}

/// A block named by both height and hash.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Debug,
    BorshSerialize,
    BorshDeserialize,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct BlockId {
    pub height: Height,
    pub hash: BlockHash,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hash_hex_is_reversed_like_bitcoin() {
        // Bitcoin's genesis hash as every explorer shows it, and its first raw byte.
        let shown = "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f";
        let hash = BlockHash::from_hex(shown).expect("valid hex");
        assert_eq!(hash.0[0], 0x6f);
        assert_eq!(hash.0[31], 0x00);
        assert_eq!(hash.to_string(), shown);
    }

    #[test]
    fn bad_hash_hex_names_the_value() {
        let err = TxHash::from_hex("abc").unwrap_err();
        assert_eq!(err.value, "abc");
        assert!(err.to_string().contains("TxHash"));
    }

    #[test]
    fn weight_orders_numerically_and_round_trips() {
        let a = Weight::from_u64(2);
        let b = Weight::from_u64(256);
        assert!(a < b);
        assert_eq!(Weight::from_be_bytes(b.to_be_bytes()), b);
        assert_eq!(a.saturating_add(b), Weight::from_u64(258));
    }
}
