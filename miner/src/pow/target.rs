//! Targets, their compact "bits" encoding and the work they stand for, with Bitcoin Core's
//! exact semantics (`arith_uint256::SetCompact` / `GetCompact`, `GetBlockProof`), in the
//! shape of rust-bitcoin's `units::pow` types.
//!
//! A compact number is `mantissa · 256^(exponent − 3)` with a 24-bit mantissa whose top
//! bit is a sign flag: `bits = exponent << 24 | sign << 23 | mantissa`.

use chain::{BlockHash, U256, Weight};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Mask of the 23 mantissa bits of a compact number.
const MANTISSA_MASK: u32 = 0x007f_ffff;
/// The sign bit of a compact number (a negative target is never valid).
const SIGN_BIT: u32 = 0x0080_0000;

/// The 32-bit compact encoding of a target, as it sits in a header's `bits`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct CompactTarget(u32);

/// What Bitcoin Core's `SetCompact` makes of a compact number: the value and its two flags.
///
/// The value is computed even when a flag is set (Core does the same; on overflow the bits
/// shifted past 2^256 are lost).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct DecodedCompact {
    pub value: U256,
    pub negative: bool,
    pub overflow: bool,
}

impl CompactTarget {
    /// Wraps the `bits` of a header.
    pub const fn from_consensus(bits: u32) -> CompactTarget {
        CompactTarget(bits)
    }

    /// The `bits` of a header.
    pub const fn to_consensus(self) -> u32 {
        self.0
    }

    /// Bitcoin Core's `SetCompact`, flags included.
    pub fn decode(self) -> DecodedCompact {
        let size = self.0 >> 24;
        let mut word = self.0 & MANTISSA_MASK;
        let value = if size <= 3 {
            // Core shifts the mantissa right *before* testing the flags, so low mantissa
            // bytes that fall off make e.g. 0x01803456 a non-negative zero.
            word >>= 8 * (3 - size);
            U256::from(word)
        } else {
            // A shift of 256 bits or more leaves zero, as Core's `<<=` does.
            U256::from(word).wrapping_shl(8 * (size as usize - 3))
        };
        let negative = word != 0 && self.0 & SIGN_BIT != 0;
        let overflow =
            word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
        DecodedCompact {
            value,
            negative,
            overflow,
        }
    }

    /// The target, or `None` when the number is negative, overflows 256 bits or is zero:
    /// the cases Core's `DeriveTarget` refuses.
    pub fn to_target(self) -> Option<Target> {
        let decoded = self.decode();
        if decoded.negative || decoded.overflow || decoded.value.is_zero() {
            None
        } else {
            Some(Target(decoded.value))
        }
    }

    /// Bitcoin Core's `GetCompact(negative)`: the shortest compact form of `value`, which
    /// keeps its 3 most significant bytes (so it rounds down).
    pub fn encode(value: U256, negative: bool) -> CompactTarget {
        let mut size = value.byte_len() as u32;
        let mut compact: u32 = if size <= 3 {
            // Fits in 24 bits, so the cast keeps every bit.
            (value.as_limbs()[0] << (8 * (3 - size))) as u32
        } else {
            // 3 bytes after shifting: the cast keeps every bit.
            value.wrapping_shr(8 * (size as usize - 3)).as_limbs()[0] as u32
        };
        // The mantissa's top bit is the sign: move one byte into the exponent instead.
        if compact & SIGN_BIT != 0 {
            compact >>= 8;
            size += 1;
        }
        compact |= size << 24;
        if negative && compact & MANTISSA_MASK != 0 {
            compact |= SIGN_BIT;
        }
        CompactTarget(compact)
    }
}

impl fmt::Display for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#010x}", self.0)
    }
}

impl fmt::Debug for CompactTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CompactTarget({self})")
    }
}

impl From<CompactTarget> for u32 {
    fn from(c: CompactTarget) -> u32 {
        c.0
    }
}

/// Serialized as a `0x`-prefixed hex string (how people write bits); read from that or from
/// a plain integer.
impl Serialize for CompactTarget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for CompactTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BitsVisitor;
        impl Visitor<'_> for BitsVisitor {
            type Value = CompactTarget;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("compact target bits: a u32 or a hex string such as \"0x1d00ffff\"")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CompactTarget, E> {
                u32::try_from(v)
                    .map(CompactTarget)
                    .map_err(|_| E::custom(format!("bits {v} do not fit in 32 bits")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<CompactTarget, E> {
                u32::try_from(v)
                    .map(CompactTarget)
                    .map_err(|_| E::custom(format!("bits {v} do not fit in 32 bits")))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<CompactTarget, E> {
                let digits = v
                    .strip_prefix("0x")
                    .or_else(|| v.strip_prefix("0X"))
                    .unwrap_or(v);
                u32::from_str_radix(digits, 16)
                    .map(CompactTarget)
                    .map_err(|_| E::custom(format!("bits {v:?} are not a 32-bit hex number")))
            }
        }
        d.deserialize_any(BitsVisitor)
    }
}

/// A proof-of-work target: a block is valid when its hash, read as a little-endian 256-bit
/// number, is at most the target.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Target(U256);

impl Target {
    /// The hardest possible target.
    pub const ZERO: Target = Target(U256::ZERO);
    /// The easiest possible target (every hash meets it).
    pub const MAX: Target = Target(U256::MAX);

    pub const fn from_u256(value: U256) -> Target {
        Target(value)
    }

    pub const fn to_u256(self) -> U256 {
        self.0
    }

    /// Big-endian bytes, as Bitcoin Core's `GetHex` shows a target.
    pub fn from_be_bytes(bytes: [u8; 32]) -> Target {
        Target(U256::from_be_bytes(bytes))
    }

    pub fn to_be_bytes(self) -> [u8; 32] {
        self.0.to_be_bytes()
    }

    /// The compact form (rounded down to 3 significant bytes).
    pub fn to_compact(self) -> CompactTarget {
        CompactTarget::encode(self.0, false)
    }

    /// Whether `hash` meets this target.
    pub fn is_met_by(self, hash: &BlockHash) -> bool {
        hash_value(hash) <= self.0
    }

    /// The expected number of hashes to find a block: `2^256 / (target + 1)`, computed in
    /// 256 bits as `!t / (t + 1) + 1` (Bitcoin Core's `GetBlockProof`) because 2^256 itself
    /// does not fit.
    pub fn to_work(self) -> Work {
        match self.0.checked_add(U256::from(1u8)) {
            // 2^256 / 1 does not fit either; saturate (a zero target is never valid anyway).
            Some(divisor) if self.0.is_zero() => Work(U256::MAX / divisor),
            Some(divisor) => Work((!self.0) / divisor + U256::from(1u8)),
            // t = 2^256 − 1: every hash meets it, one hash of work.
            None => Work(U256::from(1u8)),
        }
    }
}

/// A block hash as the number Bitcoin compares with the target: its bytes little-endian.
pub fn hash_value(hash: &BlockHash) -> U256 {
    U256::from_le_bytes(hash.0)
}

impl From<U256> for Target {
    fn from(value: U256) -> Target {
        Target(value)
    }
}

impl From<Target> for U256 {
    fn from(target: Target) -> U256 {
        target.0
    }
}

impl fmt::Display for Target {
    /// 64 hex digits, most significant first (as block explorers and Core show targets).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_be_bytes()))
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// The expected number of hashes behind a block; what it adds to fork choice.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct Work(U256);

impl Work {
    pub const fn to_u256(self) -> U256 {
        self.0
    }

    pub fn to_weight(self) -> Weight {
        Weight(self.0)
    }
}

impl From<Work> for Weight {
    fn from(work: Work) -> Weight {
        Weight(work.0)
    }
}

impl fmt::Display for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn target_hex(hex_digits: &str) -> U256 {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).expect("64 hex digits");
        U256::from_be_bytes(bytes)
    }

    // From Bitcoin Core src/test/arith_uint256_tests.cpp, bignum_SetCompact
    // (also in the repository's testdata/compact_bits.json).
    #[test]
    fn set_compact_matches_bitcoin_core() {
        // (compact, value hex, negative, overflow, GetCompact(negative))
        let cases: &[(u32, &str, bool, bool, u32)] = &[
            (0x0000_0000, "00", false, false, 0x0000_0000),
            (0x0112_3456, "12", false, false, 0x0112_0000),
            (0x0180_3456, "00", false, false, 0x0000_0000),
            (0x0492_3456, "12345600", true, false, 0x0492_3456),
            (0x0500_9234, "92340000", false, false, 0x0500_9234),
            (
                0x2012_3456,
                "1234560000000000000000000000000000000000000000000000000000000000",
                false,
                false,
                0x2012_3456,
            ),
        ];
        for &(bits, hex_value, negative, overflow, reencoded) in cases {
            let padded = format!("{hex_value:0>64}");
            let decoded = CompactTarget::from_consensus(bits).decode();
            assert_eq!(decoded.value, target_hex(&padded), "{bits:#x}");
            assert_eq!(decoded.negative, negative, "{bits:#x}");
            assert_eq!(decoded.overflow, overflow, "{bits:#x}");
            assert_eq!(
                CompactTarget::encode(decoded.value, negative).to_consensus(),
                reencoded,
                "{bits:#x}"
            );
        }
        let overflowing = CompactTarget::from_consensus(0xff12_3456).decode();
        assert!(overflowing.overflow && !overflowing.negative);
        // GetCompact never sets the mantissa's sign bit: 0x80 needs a second byte.
        assert_eq!(
            CompactTarget::encode(U256::from(0x80u8), false).to_consensus(),
            0x0200_8000
        );
    }

    #[test]
    fn invalid_compacts_have_no_target() {
        for bits in [
            0x0000_0000,
            0x0492_3456,
            0xff12_3456,
            0x0180_3456,
            0x2300_ffff,
        ] {
            assert_eq!(
                CompactTarget::from_consensus(bits).to_target(),
                None,
                "{bits:#x}"
            );
        }
        let limit = CompactTarget::from_consensus(0x1d00_ffff).to_target();
        assert_eq!(
            limit.map(Target::to_u256),
            Some(target_hex(
                "00000000ffff0000000000000000000000000000000000000000000000000000"
            ))
        );
    }

    #[test]
    fn work_is_two_to_the_256_over_target_plus_one() {
        // Bitcoin's genesis: 0x1d00ffff is worth 0x100010001 hashes (chainwork of block 0).
        let genesis = CompactTarget::from_consensus(0x1d00_ffff)
            .to_target()
            .expect("valid bits");
        assert_eq!(genesis.to_work().to_u256(), U256::from(0x1_0001_0001u64));
        // A target of 2^255 - 1 means one hash in two.
        let half = Target::from_u256(U256::MAX >> 1);
        assert_eq!(half.to_work().to_u256(), U256::from(2u8));
        assert_eq!(Target::MAX.to_work().to_u256(), U256::from(1u8));
        assert_eq!(Target::ZERO.to_work().to_u256(), U256::MAX);
    }

    #[test]
    fn hash_compares_little_endian() {
        // Bitcoin's genesis hash and target: the hash's last raw byte is its most significant.
        let hash =
            BlockHash::from_hex("000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f")
                .expect("valid hex");
        let target = CompactTarget::from_consensus(0x1d00_ffff)
            .to_target()
            .expect("valid bits");
        assert!(target.is_met_by(&hash));
        let harder = CompactTarget::from_consensus(0x1b00_ffff)
            .to_target()
            .expect("valid bits");
        assert!(!harder.is_met_by(&hash));
    }

    #[test]
    fn bits_serde_reads_hex_and_integers() {
        #[derive(Deserialize, Serialize)]
        struct Holder {
            bits: CompactTarget,
        }
        let from_hex: Holder = serde_json::from_str(r#"{"bits":"0x207fffff"}"#).expect("hex");
        let from_int: Holder = serde_json::from_str(r#"{"bits":545259519}"#).expect("int");
        assert_eq!(from_hex.bits, CompactTarget::from_consensus(0x207f_ffff));
        assert_eq!(from_int.bits, from_hex.bits);
        assert_eq!(
            serde_json::to_string(&from_hex).expect("serializes"),
            r#"{"bits":"0x207fffff"}"#
        );
        assert!(serde_json::from_str::<Holder>(r#"{"bits":"0xnope"}"#).is_err());
        assert!(serde_json::from_str::<Holder>(r#"{"bits":4294967296}"#).is_err());
    }

    proptest! {
        /// Encoding keeps the most significant bytes that fit the 23-bit mantissa: decoding
        /// gives back a value at most the original and less than one mantissa unit below.
        #[test]
        fn compact_rounds_down_by_less_than_one_mantissa_unit(limbs in any::<[u64; 4]>()) {
            let value = U256::from_limbs(limbs);
            let compact = CompactTarget::encode(value, false);
            let back = compact.decode();
            prop_assert!(!back.negative && !back.overflow);
            prop_assert!(back.value <= value);
            let exponent = (compact.to_consensus() >> 24) as usize;
            if exponent > 3 {
                let unit = U256::from(1u8) << (8 * (exponent - 3));
                prop_assert!(value - back.value < unit);
            } else {
                prop_assert_eq!(back.value, value);
            }
            // The encoding of a decoded value is a fixed point.
            prop_assert_eq!(CompactTarget::encode(back.value, false), compact);
        }

        /// Every u32 decodes without panicking, and a target exists exactly when Core would
        /// accept the bits.
        #[test]
        fn decode_never_panics_and_valid_targets_are_positive(bits in any::<u32>()) {
            let compact = CompactTarget::from_consensus(bits);
            let decoded = compact.decode();
            match compact.to_target() {
                Some(t) => prop_assert!(!t.to_u256().is_zero() && !decoded.negative),
                None => prop_assert!(decoded.negative || decoded.overflow || decoded.value.is_zero()),
            }
        }
    }
}
