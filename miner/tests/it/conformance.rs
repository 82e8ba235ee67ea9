//! The full public vector sets in the repository's `testdata/` (see its SOURCES.md): every
//! compact case, every Bitcoin retarget, every aserti3-2d line and every real header. Each
//! test's name carries the number of cases it must run, and asserts exactly that number.

use crate::support::{read_testdata, testdata_dir};
use chain::U256;
use miner::pow::{
    AsertParams, BitcoinRetarget, CompactTarget, asert_next_bits, bitcoin_next_bits, header_hash,
};
use serde_json::Value;
use std::path::Path;

fn read_json(name: &str) -> Value {
    serde_json::from_str(&read_testdata(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

fn field<'a>(case: &'a Value, key: &str) -> &'a Value {
    case.get(key)
        .unwrap_or_else(|| panic!("case without {key:?}: {case}"))
}

fn hex_u32(case: &Value, key: &str) -> u32 {
    let s = field(case, key)
        .as_str()
        .unwrap_or_else(|| panic!("{key} not a string: {case}"));
    u32::from_str_radix(s.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("{key} {s:?} is not hex bits: {e}"))
}

fn int(case: &Value, key: &str) -> i64 {
    field(case, key)
        .as_i64()
        .unwrap_or_else(|| panic!("{key} not an integer: {case}"))
}

fn u256_hex(s: &str) -> U256 {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(s, &mut bytes).unwrap_or_else(|e| panic!("{s:?}: {e}"));
    U256::from_be_bytes(bytes)
}

#[test]
fn conformance_compact_bits_20_set_and_1_get_cases() {
    let data = read_json("compact_bits.json");
    let cases = field(&data, "cases").as_array().expect("cases array");
    for case in cases {
        let bits = hex_u32(case, "compact");
        let compact = CompactTarget::from_consensus(bits);
        let decoded = compact.decode();
        let negative = field(case, "negative").as_bool().expect("bool");
        let overflow = field(case, "overflow").as_bool().expect("bool");
        assert_eq!(decoded.negative, negative, "negative flag of {bits:#010x}");
        assert_eq!(decoded.overflow, overflow, "overflow flag of {bits:#010x}");
        if let Some(target_hex) = field(case, "target_hex").as_str() {
            assert_eq!(decoded.value, u256_hex(target_hex), "value of {bits:#010x}");
        }
        if field(case, "reencoded_compact").is_string() {
            let with_sign = field(case, "reencode_with_negative_flag")
                .as_bool()
                .expect("bool");
            let reencoded = CompactTarget::encode(decoded.value, with_sign);
            assert_eq!(
                reencoded.to_consensus(),
                hex_u32(case, "reencoded_compact"),
                "{bits:#010x}"
            );
        }
        let valid = !negative && !overflow && !decoded.value.is_zero();
        assert_eq!(
            compact.to_target().is_some(),
            valid,
            "validity of {bits:#010x}"
        );
    }
    let encode_cases = field(&data, "encode_cases")
        .as_array()
        .expect("encode_cases array");
    for case in encode_cases {
        let value = u256_hex(field(case, "target_hex").as_str().expect("hex"));
        assert_eq!(
            CompactTarget::encode(value, false).to_consensus(),
            hex_u32(case, "expected_compact")
        );
    }
    assert_eq!(
        (cases.len(), encode_cases.len()),
        (20, 1),
        "compact_bits.json: the 20 SetCompact and 1 GetCompact cases of Core"
    );
}

#[test]
fn conformance_bitcoin_retarget_4_core_and_413_mainnet_cases() {
    let data = read_json("retarget_bitcoin.json");
    let params = BitcoinRetarget::bitcoin_mainnet();
    let mut ran = Vec::new();
    for set in ["core_test_cases", "real_chain_cases"] {
        let mut in_set = 0;
        for case in field(&data, set).as_array().expect("array") {
            let got = bitcoin_next_bits(
                int(case, "last_retarget_time"),
                int(case, "last_block_time"),
                hex_u32(case, "nbits"),
                &params,
            );
            assert_eq!(
                CompactTarget::from_consensus(got),
                CompactTarget::from_consensus(hex_u32(case, "expected_nbits")),
                "{set}: {case}"
            );
            in_set += 1;
        }
        ran.push(in_set);
    }
    assert_eq!(
        ran,
        [4, 413],
        "retarget_bitcoin.json: Core's and mainnet's cases"
    );
}

/// One aserti3-2d vector file: `## name: value` headers, then `iteration height time bits`.
fn run_asert_file(path: &Path, params: &AsertParams) -> usize {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let header = |names: &[&str]| -> String {
        text.lines()
            .filter_map(|l| l.strip_prefix("##"))
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| names.contains(&k.trim()))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| panic!("{}: no {names:?} header", path.display()))
    };
    let anchor_height: u64 = header(&["anchor height"]).parse().expect("anchor height");
    let anchor_time: i64 = header(&["anchor ancestor time", "anchor parent time"])
        .parse()
        .expect("anchor time");
    let anchor_bits = u32::from_str_radix(header(&["anchor nBits"]).trim_start_matches("0x"), 16)
        .expect("anchor bits");
    let iterations: usize = header(&["iterations"]).parse().expect("iterations");
    let mut ran = 0;
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, height, time, bits] = fields[..] else {
            panic!("{}: malformed line {line:?}", path.display());
        };
        let height: u64 = height.parse().expect("height");
        let time: i64 = time.parse().expect("time");
        let expected = u32::from_str_radix(bits.trim_start_matches("0x"), 16).expect("bits");
        let got = asert_next_bits(
            anchor_height,
            anchor_time,
            anchor_bits,
            height,
            time,
            params,
        );
        assert_eq!(
            CompactTarget::from_consensus(got),
            CompactTarget::from_consensus(expected),
            "{} line {line:?}",
            path.display()
        );
        ran += 1;
    }
    assert_eq!(
        ran,
        iterations,
        "{}: line count vs iterations header",
        path.display()
    );
    ran
}

#[test]
fn conformance_asert_14000_vectors() {
    let dir = testdata_dir();
    let params = AsertParams::bitcoin_cash();
    let mut total = 0;
    let mut per_file = Vec::new();
    for run in 1..=12 {
        let name = format!("run{run:02}");
        let ran = run_asert_file(&dir.join("asert_vectors").join(&name), &params);
        per_file.push(format!("{name} {ran}"));
        total += ran;
    }
    assert_eq!(
        total,
        14_000,
        "asert_vectors: every aserti3-2d line ({})",
        per_file.join(", ")
    );
}

#[test]
fn conformance_bitcoin_headers_22_mainnet_headers() {
    let data = read_json("bitcoin_headers.json");
    let headers = field(&data, "headers").as_array().expect("headers array");
    for h in headers {
        let height = int(h, "height");
        let mut bytes = [0u8; 80];
        hex::decode_to_slice(field(h, "header_hex").as_str().expect("hex"), &mut bytes)
            .unwrap_or_else(|e| panic!("header {height}: {e}"));
        let hash = header_hash(&bytes);
        assert_eq!(
            hash.to_string(),
            field(h, "hash").as_str().expect("hash"),
            "header {height}"
        );
        let bits = hex_u32(h, "bits");
        assert_eq!(
            u32::from_le_bytes(bytes[72..76].try_into().expect("4 bytes")),
            bits
        );
        let target = CompactTarget::from_consensus(bits)
            .to_target()
            .unwrap_or_else(|| panic!("header {height} has invalid bits {bits:#x}"));
        assert!(
            target.is_met_by(&hash),
            "header {height}: {hash} above {target}"
        );
    }
    assert_eq!(headers.len(), 22, "bitcoin_headers.json: every header");
}
