//! Representative published vectors, inline so they read as the specification. The full
//! sets run in `conformance`.

use chain::{BlockHash, U256};
use miner::pow::{
    AsertParams, BitcoinRetarget, CompactTarget, asert_next_bits, bitcoin_next_bits, header_hash,
};

fn header_bytes(hex_digits: &str) -> [u8; 80] {
    let mut bytes = [0u8; 80];
    hex::decode_to_slice(hex_digits, &mut bytes).expect("160 hex digits");
    bytes
}

/// Real Bitcoin mainnet headers: (height, raw 80 bytes, block hash as explorers show it).
/// Genesis: bitcoin/bitcoin src/kernel/chainparams.cpp; 1: bitcoinj BitcoinSerializerTest;
/// 100000: btcd btcutil/block_test.go; 125552: en.bitcoin.it/wiki/Block_hashing_algorithm.
const HEADERS: [(u32, &str, &str); 4] = [
    (
        0,
        "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d1dac2b7c",
        "000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f",
    ),
    (
        1,
        "010000006fe28c0ab6f1b372c1a6a246ae63f74f931e8365e15a089c68d6190000000000982051fd1e4ba744bbbe680e1fee14677ba1a3c3540bf7b1cdb606e857233e0e61bc6649ffff001d01e36299",
        "00000000839a8e6886ab5951d76f411475428afc90947ee320161bbf18eb6048",
    ),
    (
        100_000,
        "0100000050120119172a610421a6c3011dd330d9df07b63616c2cc1f1cd00200000000006657a9252aacd5c0b2940996ecff952228c3067cc38d4885efb5a4ac4247e9f337221b4d4c86041b0f2b5710",
        "000000000003ba27aa200b1cecaad478d2b00432346c3f1f3986da1afd33e506",
    ),
    (
        125_552,
        "0100000081cd02ab7e569e8bcd9317e2fe99f2de44d49ab2b8851ba4a308000000000000e320b6c2fffc8d750423db8b1eb942ae710e951ed797f7affc8892b0f1fc122bc7f5d74df2b9441a42a14695",
        "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d",
    ),
];

#[test]
fn bitcoin_headers_hash_to_their_block_hash_and_meet_their_target() {
    for (height, raw, shown) in HEADERS {
        let bytes = header_bytes(raw);
        let hash = header_hash(&bytes);
        assert_eq!(hash.to_string(), shown, "block {height}");
        assert_eq!(hash, BlockHash::from_hex(shown).expect("hex"));
        let bits = u32::from_le_bytes(bytes[72..76].try_into().expect("4 bytes"));
        let target = CompactTarget::from_consensus(bits)
            .to_target()
            .expect("mainnet bits are valid");
        assert!(target.is_met_by(&hash), "block {height} meets {bits:#x}");
    }
}

#[test]
fn a_changed_nonce_breaks_the_genesis_proof_of_work() {
    let mut bytes = header_bytes(HEADERS[0].1);
    bytes[76] ^= 1;
    let target = CompactTarget::from_consensus(0x1d00_ffff)
        .to_target()
        .expect("valid");
    assert!(!target.is_met_by(&header_hash(&bytes)));
}

/// Bitcoin Core src/test/arith_uint256_tests.cpp, bignum_SetCompact:
/// (bits, target as big-endian hex or None when refused, GetCompact of the value).
#[test]
fn compact_bits_as_bitcoin_core_reads_them() {
    let cases: [(u32, Option<&str>, u32); 6] = [
        (0x0112_3456, Some("12"), 0x0112_0000),
        (0x0212_3456, Some("1234"), 0x0212_3400),
        (0x0500_9234, Some("92340000"), 0x0500_9234),
        (
            0x1d00_ffff,
            Some("ffff0000000000000000000000000000000000000000000000000000"),
            0x1d00_ffff,
        ),
        // Negative (the sign bit is set with a non-zero mantissa): no target.
        (0x0492_3456, None, 0x0412_3456),
        // Zero after the right shift of a short mantissa: no target.
        (0x0100_3456, None, 0x0000_0000),
    ];
    for (bits, target_hex, reencoded) in cases {
        let compact = CompactTarget::from_consensus(bits);
        let expected = target_hex.map(|h| {
            let padded = format!("{h:0>64}");
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(&padded, &mut bytes).expect("hex");
            U256::from_be_bytes(bytes)
        });
        assert_eq!(
            compact.to_target().map(|t| t.to_u256()),
            expected,
            "{bits:#x}"
        );
        assert_eq!(
            CompactTarget::encode(compact.decode().value, false).to_consensus(),
            reencoded,
            "{bits:#x}"
        );
    }
    assert!(CompactTarget::from_consensus(0xff12_3456).decode().overflow);
}

/// Bitcoin Core src/test/pow_tests.cpp: the four CalculateNextWorkRequired cases.
#[test]
fn bitcoin_core_pow_tests() {
    let params = BitcoinRetarget::bitcoin_mainnet();
    // (test, first block time, last block time, bits, expected bits)
    let cases = [
        (
            "get_next_work (block 32255)",
            1_261_130_161,
            1_262_152_739,
            0x1d00_ffff,
            0x1d00_d86a,
        ),
        (
            "get_next_work_pow_limit (block 2015)",
            1_231_006_505,
            1_233_061_996,
            0x1d00_ffff,
            0x1d00_ffff,
        ),
        (
            "get_next_work_lower_limit_actual (block 68543)",
            1_279_008_237,
            1_279_297_671,
            0x1c05_a3f4,
            0x1c01_68fd,
        ),
        (
            "get_next_work_upper_limit_actual (block 46367)",
            1_263_163_443,
            1_269_211_443,
            0x1c38_7f6f,
            0x1d00_e1fd,
        ),
    ];
    for (name, first, last, bits, expected) in cases {
        assert_eq!(
            bitcoin_next_bits(first, last, bits, &params),
            expected,
            "{name}"
        );
    }
}

/// Lines of the official aserti3-2d vectors (BCHN qa-assets test_vectors/aserti3-2d):
/// (file, anchor height, anchor parent time, anchor bits, eval height, eval time, bits).
#[test]
fn asert_official_vector_lines() {
    let params = AsertParams::bitcoin_cash();
    let cases: [(&str, u64, i64, u32, u64, i64, u32); 7] = [
        ("run01 #1", 1, 0, 0x1d00_ffff, 2, 1200, 0x1d00_ffff),
        ("run05 #1", 1, 0, 0x1d00_ffff, 2, 0, 0x1d00_fec5),
        ("run05 #2", 1, 0, 0x1d00_ffff, 290, 0, 0x1c7f_62c0),
        ("run11 #2", 1, 0, 0x1802_aee8, 3, 1496, 0x1802_ae12),
        (
            "run11 #3 (time goes back)",
            1,
            0,
            0x1802_aee8,
            4,
            1398,
            0x1802_ac28,
        ),
        (
            "run10 #1 (height past 2^63)",
            9_223_372_036_854_775_802,
            2_147_483_047,
            0x1802_aee8,
            9_223_372_036_854_775_803,
            2_147_484_547,
            0x1802_afbb,
        ),
        (
            "run10 #4",
            9_223_372_036_854_775_802,
            2_147_483_047,
            0x1802_aee8,
            9_223_372_036_854_775_806,
            2_147_487_247,
            0x1802_b23a,
        ),
    ];
    for (name, h_ref, t_ref, b_ref, h, t, expected) in cases {
        assert_eq!(
            asert_next_bits(h_ref, t_ref, b_ref, h, t, &params),
            expected,
            "{name}"
        );
    }
}
