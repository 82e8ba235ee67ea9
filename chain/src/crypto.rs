//! Hashing, merkle roots, secp256k1 keys and signatures, addresses.
//!
//! Signatures are ECDSA over secp256k1 (k256) on a 32-byte prehash, 64 bytes `r ‖ s`, and
//! only the low-S form is valid (BIP 62/146): the high-S twin of a valid signature is
//! refused, so a third party cannot change a transaction's hash by flipping `s`.

use crate::primitives::{Hash256, TxHash};
use bech32::Bech32m;
use borsh::{BorshDeserialize, BorshSerialize};
use k256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use k256::ecdsa::{Signature as EcdsaSignature, SigningKey, VerifyingKey};
use k256::elliptic_curve::scalar::IsHigh;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// SHA-256 applied twice, as Bitcoin hashes headers and transactions.
pub fn sha256d(data: &[u8]) -> [u8; 32] {
    let first = Sha256::digest(data);
    Sha256::digest(first).into()
}

/// sha256d over several byte strings, concatenated.
pub fn sha256d_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    let first = hasher.finalize();
    Sha256::digest(first).into()
}

/// Merkle root of a block's transaction hashes.
///
/// Bitcoin pairs an odd last node with itself, so `[a, b, c]` and `[a, b, c, c]` share a
/// root (CVE-2012-2459). Here leaves and inner nodes are domain-separated, an odd node
/// moves up unchanged instead of being duplicated, and the root commits to the number of
/// leaves, so no two different lists have one root.
pub fn merkle_root(tx_hashes: &[TxHash]) -> Hash256 {
    let count = (tx_hashes.len() as u64).to_le_bytes();
    if tx_hashes.is_empty() {
        return Hash256(sha256d_parts(&[b"toychain/merkle/empty", &count]));
    }
    let mut level: Vec<[u8; 32]> = tx_hashes
        .iter()
        .map(|h| sha256d_parts(&[&[0x00], &h.0]))
        .collect();
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => sha256d_parts(&[&[0x01], left, right]),
                [single] => *single,
                _ => unreachable!("chunks(2) yields one or two items"),
            })
            .collect();
    }
    Hash256(sha256d_parts(&[&[0x02], &count, &level[0]]))
}

/// A secp256k1 public key, stored compressed (33 bytes, SEC1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 33]);

impl PublicKey {
    /// The verifying key, or an error when the bytes are not a point on the curve.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        VerifyingKey::from_sec1_bytes(&self.0).map_err(|_| CryptoError::BadPublicKey {
            key: hex::encode(self.0),
        })
    }

    pub fn address(&self) -> Address {
        Address::from_public_key(self)
    }

    /// Verifies a low-S signature over a 32-byte prehash.
    pub fn verify(&self, prehash: &Hash256, signature: &Signature) -> Result<(), CryptoError> {
        verify_decoded(&self.verifying_key()?, prehash, signature)
    }
}

/// Verifies a low-S signature over a 32-byte prehash by a key already decoded with
/// [`PublicKey::verifying_key`], with k256's own ECDSA check: the reference
/// [`verify_decoded_batch`] agrees with.
pub(crate) fn verify_decoded(
    key: &VerifyingKey,
    prehash: &Hash256,
    signature: &Signature,
) -> Result<(), CryptoError> {
    let sig = EcdsaSignature::from_slice(&signature.0).map_err(|_| CryptoError::BadSignature)?;
    if bool::from(sig.s().is_high()) {
        return Err(CryptoError::HighS);
    }
    key.verify_prehash(&prehash.0, &sig)
        .map_err(|_| CryptoError::BadSignature)
}

/// [`verify_decoded`] for many signatures at once, with the same verdict for each. An
/// ECDSA check (SEC 1 §4.1.4) inverts twice: `s` modulo the group order, to get
/// `u1 = z/s` and `u2 = r/s`, and the `Z` of `R = u1·G + u2·Q`, to read `R`'s affine `x`.
/// Here each kind of inversion is done once for the whole batch (Montgomery's trick:
/// one inversion and three multiplications per element), which saves about a tenth of
/// each check. Every step but the two inversions is k256's own (its `u1·G + u2·Q`, its
/// reduction of `z` and of `x` modulo the order), as in `ecdsa::hazmat::verify_prehashed`.
pub(crate) fn verify_decoded_batch(
    items: &[(VerifyingKey, Hash256, Signature)],
) -> Vec<Result<(), CryptoError>> {
    use k256::elliptic_curve::BatchNormalize;
    use k256::elliptic_curve::ops::{MulByGeneratorVartime, Reduce};
    use k256::elliptic_curve::point::AffineCoordinates;
    use k256::{FieldBytes, ProjectivePoint, Scalar};

    let mut verdicts: Vec<Result<(), CryptoError>> = Vec::with_capacity(items.len());
    // (index, Q, z, r, s) of the well-formed signatures.
    let mut checks: Vec<(usize, ProjectivePoint, Scalar, Scalar, Scalar)> = Vec::new();
    for (i, (key, prehash, signature)) in items.iter().enumerate() {
        let parsed =
            EcdsaSignature::from_slice(&signature.0).map_err(|_| CryptoError::BadSignature);
        match parsed {
            Err(e) => verdicts.push(Err(e)),
            Ok(sig) if bool::from(sig.s().is_high()) => verdicts.push(Err(CryptoError::HighS)),
            Ok(sig) => {
                let (r, s) = sig.split_scalars();
                let z = <Scalar as Reduce<FieldBytes>>::reduce(&FieldBytes::from(prehash.0));
                checks.push((i, ProjectivePoint::from(*key.as_affine()), z, *r, *s));
                // Until the curve arithmetic below says otherwise.
                verdicts.push(Err(CryptoError::BadSignature));
            }
        }
    }
    // 1 / s for every check: prefix products, one inversion, then back down the list.
    let mut prefix = Vec::with_capacity(checks.len());
    let mut product = Scalar::ONE;
    for &(_, _, _, _, s) in &checks {
        prefix.push(product);
        product *= s;
    }
    // Each s is non-zero (the signature parser refuses zero) and the order is prime, so
    // the product is invertible.
    let mut inverse = Option::<Scalar>::from(product.invert_vartime()).unwrap_or(Scalar::ZERO);
    let mut points = vec![ProjectivePoint::IDENTITY; checks.len()];
    for (k, &(_, q, z, r, s)) in checks.iter().enumerate().rev() {
        let s_inv = inverse * prefix[k];
        inverse *= s;
        points[k] =
            ProjectivePoint::mul_by_generator_and_mul_add_vartime(&(z * s_inv), &(r * s_inv), &q);
    }
    // The identity (no affine x) normalizes to k256's identity, whose x is zero: never a
    // valid r, as in the one-by-one check.
    let affine =
        <ProjectivePoint as BatchNormalize<[ProjectivePoint]>>::batch_normalize_vartime(&points);
    for (&(i, _, _, r, _), point) in checks.iter().zip(&affine) {
        if <Scalar as Reduce<FieldBytes>>::reduce(&point.x()) == r {
            verdicts[i] = Ok(());
        }
    }
    verdicts
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A 64-byte compact ECDSA signature `r ‖ s` (big-endian scalars).
#[derive(Clone, Copy, PartialEq, Eq, Hash, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

impl Signature {
    /// The all-zero signature: never valid, used in unsigned templates.
    pub const EMPTY: Signature = Signature([0u8; 64]);

    /// The other valid encoding of the same signature (`s` replaced by `n - s`). Only for
    /// tests that check high-S signatures are refused.
    pub fn malleated(&self) -> Option<Signature> {
        let sig = EcdsaSignature::from_slice(&self.0).ok()?;
        let (r, s) = sig.split_scalars();
        let flipped = EcdsaSignature::from_scalars(r.to_bytes(), (-*s).to_bytes()).ok()?;
        let mut out = [0u8; 64];
        out.copy_from_slice(&flipped.to_bytes());
        Some(Signature(out))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", hex::encode(self.0))
    }
}

/// A secp256k1 secret key. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A key from 32 big-endian bytes; refused when zero or not below the curve order.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<SecretKey, CryptoError> {
        SigningKey::from_slice(bytes)
            .map(SecretKey)
            .map_err(|_| CryptoError::BadSecretKey)
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<SecretKey, CryptoError> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| CryptoError::Random {
                reason: e.to_string(),
            })?;
            // Fails only for zero or values ≥ n: probability ~2^-128, so just draw again.
            if let Ok(key) = SecretKey::from_bytes(&bytes) {
                return Ok(key);
            }
        }
    }

    /// A key derived from a seed string: sha256(domain ‖ seed), re-hashed in the
    /// (astronomically unlikely) case it is not a valid scalar.
    pub fn from_seed(seed: &str) -> SecretKey {
        let mut digest: [u8; 32] =
            Sha256::digest([b"toychain/dev-key/".as_slice(), seed.as_bytes()].concat()).into();
        loop {
            if let Ok(key) = SecretKey::from_bytes(&digest) {
                return key;
            }
            digest = Sha256::digest(digest).into();
        }
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(&self.0.to_bytes());
        out
    }

    pub fn public_key(&self) -> PublicKey {
        let point = self.0.verifying_key().to_sec1_point(true);
        let mut out = [0u8; 33];
        out.copy_from_slice(point.as_bytes());
        PublicKey(out)
    }

    pub fn address(&self) -> Address {
        self.public_key().address()
    }

    /// Signs a 32-byte prehash with RFC 6979 nonces; the result is always low-S.
    pub fn sign(&self, prehash: &Hash256) -> Signature {
        let sig: EcdsaSignature = self
            .0
            .sign_prehash(&prehash.0)
            .expect("signing a 32-byte prehash with a valid key cannot fail");
        let sig = sig.normalize_s();
        let mut out = [0u8; 64];
        out.copy_from_slice(&sig.to_bytes());
        Signature(out)
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(<hidden>, address {})", self.address())
    }
}

/// Human-readable prefix of addresses.
pub const ADDRESS_HRP: &str = "toy";

/// An account address: the first 20 bytes of sha256d of the compressed public key, shown as
/// bech32m with prefix `toy` so a mistyped character is caught by the checksum.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize,
)]
pub struct Address(pub [u8; 20]);

impl Address {
    pub fn from_public_key(key: &PublicKey) -> Address {
        let digest = sha256d(&key.0);
        let mut out = [0u8; 20];
        out.copy_from_slice(&digest[..20]);
        Address(out)
    }

    pub fn parse(s: &str) -> Result<Address, ParseAddressError> {
        use bech32::primitives::decode::CheckedHrpstring;
        let err = |reason: String| ParseAddressError {
            value: s.to_owned(),
            reason,
        };
        let checked = CheckedHrpstring::new::<Bech32m>(s).map_err(|e| err(e.to_string()))?;
        if checked.hrp().as_str() != ADDRESS_HRP {
            return Err(err(format!(
                "prefix is {:?}, expected {ADDRESS_HRP:?}",
                checked.hrp().as_str()
            )));
        }
        let bytes: Vec<u8> = checked.byte_iter().collect();
        let bytes: [u8; 20] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| err(format!("{} bytes of payload, expected 20", b.len())))?;
        Ok(Address(bytes))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hrp = bech32::Hrp::parse_unchecked(ADDRESS_HRP);
        let s = bech32::encode::<Bech32m>(hrp, &self.0)
            .expect("20 bytes with a 3-letter prefix is far below bech32's length limit");
        f.write_str(&s)
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({self})")
    }
}

impl FromStr for Address {
    type Err = ParseAddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Address::parse(s)
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Address::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A string that is not a `toy1…` address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {value:?}: {reason}")]
pub struct ParseAddressError {
    pub value: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key {key} is not a point on secp256k1")]
    BadPublicKey { key: String },
    #[error("bad signature")]
    BadSignature,
    #[error("signature is not in low-S form")]
    HighS,
    #[error("secret key is zero or not below the curve order")]
    BadSecretKey,
    #[error("random number source failed: {reason}")]
    Random { reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(n: u8) -> TxHash {
        TxHash([n; 32])
    }

    /// Signatures by a few keys over distinct messages, then altered in every way a
    /// check must catch: another message's signature, another key, the high-S twin, a
    /// flipped bit in the signature or the message, r or s zero or not below the order.
    fn checks_valid_and_not() -> Vec<(VerifyingKey, Hash256, Signature)> {
        let keys: Vec<SecretKey> = (0..4)
            .map(|k| SecretKey::from_seed(&format!("batch/{k}")))
            .collect();
        let decoded = |k: &SecretKey| k.public_key().verifying_key().expect("a valid key");
        let mut items = Vec::new();
        for i in 0..96u32 {
            let key = &keys[i as usize % keys.len()];
            let message = Hash256(sha256d(&i.to_le_bytes()));
            let mut sig = key.sign(&message);
            let (mut verifier, mut prehash) = (decoded(key), message);
            match i % 8 {
                0 | 1 => {}
                2 => sig = key.sign(&Hash256(sha256d(b"another message"))),
                3 => verifier = decoded(&keys[(i as usize + 1) % keys.len()]),
                4 => sig = sig.malleated().expect("a valid signature has a twin"),
                5 => sig.0[(i as usize * 7) % 64] ^= 1 << (i % 8),
                6 => prehash.0[(i as usize * 5) % 32] ^= 1 << (i % 8),
                _ => {
                    let (half, fill) = if i % 16 == 7 { (0, 0x00) } else { (32, 0xff) };
                    sig.0[half..half + 32].fill(fill);
                }
            }
            items.push((verifier, prehash, sig));
        }
        items
    }

    #[test]
    fn a_batch_check_gives_each_signature_the_verdict_of_a_check_alone() {
        let items = checks_valid_and_not();
        let alone: Vec<_> = items
            .iter()
            .map(|(key, prehash, sig)| verify_decoded(key, prehash, sig))
            .collect();
        assert_eq!(alone.iter().filter(|v| v.is_ok()).count(), 24);
        for v in [CryptoError::BadSignature, CryptoError::HighS] {
            assert!(alone.contains(&Err(v.clone())), "{v:?} among the cases");
        }
        assert_eq!(verify_decoded_batch(&items), alone);
        assert!(verify_decoded_batch(&[]).is_empty());
        // Any split into runs gives the same verdicts, down to single signatures.
        for run in [1, 2, 7, 64] {
            let verdicts: Vec<_> = items.chunks(run).flat_map(verify_decoded_batch).collect();
            assert_eq!(verdicts, alone, "runs of {run}");
        }
    }

    #[test]
    fn sha256d_matches_bitcoin() {
        // sha256d("hello") as used in Bitcoin wiki examples.
        assert_eq!(
            hex::encode(sha256d(b"hello")),
            "9595c9df90075148eb06860365df33584b75bff782a510c6cd4883a419833d50"
        );
    }

    #[test]
    fn merkle_root_is_not_fooled_by_a_duplicated_last_tx() {
        // CVE-2012-2459: in Bitcoin [a,b,c] and [a,b,c,c] have the same root.
        let three = merkle_root(&[tx(1), tx(2), tx(3)]);
        let four = merkle_root(&[tx(1), tx(2), tx(3), tx(3)]);
        assert_ne!(three, four);
        // Also the six-vs-five case one level up.
        let five = merkle_root(&[tx(1), tx(2), tx(3), tx(4), tx(5)]);
        let six = merkle_root(&[tx(1), tx(2), tx(3), tx(4), tx(5), tx(5)]);
        assert_ne!(five, six);
    }

    #[test]
    fn merkle_root_depends_on_order_and_content() {
        let ab = merkle_root(&[tx(1), tx(2)]);
        assert_ne!(ab, merkle_root(&[tx(2), tx(1)]));
        assert_ne!(ab, merkle_root(&[tx(1)]));
        assert_ne!(merkle_root(&[]), merkle_root(&[tx(0)]));
        assert_eq!(ab, merkle_root(&[tx(1), tx(2)]));
    }

    #[test]
    fn signatures_verify_and_high_s_twin_is_refused() {
        let key = SecretKey::from_seed("alice");
        let msg = Hash256(sha256d(b"payload"));
        let sig = key.sign(&msg);
        let public = key.public_key();
        assert_eq!(public.verify(&msg, &sig), Ok(()));
        let twin = sig.malleated().expect("valid signature has a twin");
        assert_ne!(twin, sig);
        assert_eq!(public.verify(&msg, &twin), Err(CryptoError::HighS));
        let other = Hash256(sha256d(b"other"));
        assert_eq!(public.verify(&other, &sig), Err(CryptoError::BadSignature));
        let bob = SecretKey::from_seed("bob").public_key();
        assert_eq!(bob.verify(&msg, &sig), Err(CryptoError::BadSignature));
    }

    #[test]
    fn garbage_keys_and_signatures_are_errors_not_panics() {
        let bad_key = PublicKey([0x05; 33]);
        let msg = Hash256([1; 32]);
        assert!(matches!(
            bad_key.verify(&msg, &Signature([1; 64])),
            Err(CryptoError::BadPublicKey { .. })
        ));
        let key = SecretKey::from_seed("carol").public_key();
        assert_eq!(
            key.verify(&msg, &Signature::EMPTY),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            SecretKey::from_bytes(&[0; 32]).unwrap_err(),
            CryptoError::BadSecretKey
        );
        assert_eq!(
            SecretKey::from_bytes(&[0xff; 32]).unwrap_err(),
            CryptoError::BadSecretKey
        );
    }

    #[test]
    fn address_round_trips_and_refuses_typos() {
        let addr = SecretKey::from_seed("alice").address();
        let shown = addr.to_string();
        assert!(shown.starts_with("toy1"), "{shown}");
        assert_eq!(Address::parse(&shown), Ok(addr));
        // Change one character of the data part: the checksum catches it.
        let mut chars: Vec<char> = shown.chars().collect();
        let i = 10;
        chars[i] = if chars[i] == 'q' { 'p' } else { 'q' };
        let typo: String = chars.into_iter().collect();
        let err = Address::parse(&typo).unwrap_err();
        assert_eq!(err.value, typo);
        // A bech32 (not bech32m) string or another prefix is refused too.
        let hrp = bech32::Hrp::parse_unchecked("toy");
        let legacy = bech32::encode::<bech32::Bech32>(hrp, &addr.0).expect("encodes");
        assert!(Address::parse(&legacy).is_err());
        let other = bech32::encode::<Bech32m>(bech32::Hrp::parse_unchecked("bc"), &addr.0)
            .expect("encodes");
        assert!(
            Address::parse(&other)
                .unwrap_err()
                .reason
                .contains("prefix")
        );
    }

    #[test]
    fn secret_key_debug_hides_the_key() {
        let key = SecretKey::from_seed("dave");
        let shown = format!("{key:?}");
        assert!(!shown.contains(&hex::encode(key.to_bytes())));
        assert!(shown.contains("hidden"));
    }
}
