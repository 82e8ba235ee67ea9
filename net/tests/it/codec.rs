//! The sync messages' decoders, as the fuzz targets check them (`fuzz/`, `sync_request` and
//! `sync_response`): arbitrary bytes never panic, any bytes that decode re-encode to exactly
//! themselves, and what decodes is within the protocol's limits.

use chain::{BlockHash, Height, Weight};
use net::config::DEFAULT_MAX_SYNC_RESPONSE_BYTES;
use net::{MAX_SYNC_ERROR_BYTES, MAX_SYNC_ITEMS, SyncRequest, SyncResponse};
use proptest::collection::vec;
use proptest::prelude::*;

fn request() -> impl Strategy<Value = SyncRequest> {
    prop_oneof![
        Just(SyncRequest::Status),
        (any::<u64>(), 0..=MAX_SYNC_ITEMS).prop_map(|(from, count)| SyncRequest::Blocks {
            from: Height(from),
            count
        }),
        (any::<u64>(), 0..=MAX_SYNC_ITEMS).prop_map(|(from, count)| SyncRequest::Headers {
            from: Height(from),
            count
        }),
    ]
}

fn response() -> impl Strategy<Value = SyncResponse> {
    let items = || vec(vec(any::<u8>(), 0..60), 0..6);
    prop_oneof![
        (
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<[u8; 32]>(),
            any::<[u8; 32]>()
        )
            .prop_map(|(genesis, height, head, weight)| SyncResponse::Status {
                genesis: BlockHash(genesis),
                head_height: Height(height),
                head_hash: BlockHash(head),
                total_weight: Weight::from_be_bytes(weight),
            }),
        items().prop_map(SyncResponse::Blocks),
        items().prop_map(SyncResponse::Headers),
        ".{0,80}".prop_map(SyncResponse::error),
    ]
}

/// Decoding `bytes` either fails or gives a request within the limits whose encoding is
/// exactly `bytes`.
fn request_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(request) = SyncRequest::decode(bytes) {
        prop_assert_eq!(request.encode(), bytes.to_vec());
        prop_assert_eq!(request.check(), Ok(()));
    }
    Ok(())
}

/// The same for a response under the default limit.
fn response_decodes_canonically(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(response) = SyncResponse::decode(bytes, DEFAULT_MAX_SYNC_RESPONSE_BYTES) {
        prop_assert_eq!(response.encode(), bytes.to_vec());
        prop_assert_eq!(response.encoded_len(), bytes.len());
        prop_assert_eq!(response.check(), Ok(()));
    }
    Ok(())
}

proptest! {
    #[test]
    fn requests_within_the_limits_round_trip(r in request()) {
        prop_assert_eq!(SyncRequest::decode(&r.encode()), Ok(r));
    }

    #[test]
    fn responses_within_the_limits_round_trip(r in response()) {
        let bytes = r.encode();
        prop_assert_eq!(bytes.len(), r.encoded_len());
        prop_assert_eq!(SyncResponse::decode(&bytes, DEFAULT_MAX_SYNC_RESPONSE_BYTES), Ok(r));
    }

    #[test]
    fn random_bytes_decode_only_canonically(bytes in vec(any::<u8>(), 0..200)) {
        request_decodes_canonically(&bytes)?;
        response_decodes_canonically(&bytes)?;
    }

    #[test]
    fn mutated_encodings_decode_only_canonically(
        request in request(),
        response in response(),
        index in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        for bytes in [request.encode(), response.encode()] {
            let mut flipped = bytes.clone();
            flipped[index.index(bytes.len())] = byte;
            request_decodes_canonically(&flipped)?;
            response_decodes_canonically(&flipped)?;
        }
        let bytes = request.encode();
        prop_assert!(SyncRequest::decode(&bytes[..cut.index(bytes.len())]).is_err());
        let bytes = response.encode();
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(SyncResponse::decode(truncated, DEFAULT_MAX_SYNC_RESPONSE_BYTES).is_err());
    }

    #[test]
    fn error_reasons_are_cut_to_the_limit_and_decode(reason in ".{0,400}") {
        let response = SyncResponse::error(reason);
        let SyncResponse::Error(kept) = &response else {
            panic!("SyncResponse::error builds the Error variant");
        };
        prop_assert!(kept.len() <= MAX_SYNC_ERROR_BYTES);
        prop_assert_eq!(
            SyncResponse::decode(&response.encode(), DEFAULT_MAX_SYNC_RESPONSE_BYTES),
            Ok(response.clone())
        );
    }
}
