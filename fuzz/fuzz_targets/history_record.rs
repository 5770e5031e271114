//! `history::decode_deployment`: the bytes of one stored deployment record,
//! decoded as `History::get_deployment` does (listings decode the same bytes
//! and skip failures). The other record types go through the same JSON
//! decoder and are decoded from the same bytes.
//!
//! Property: never panics; an error is one line that names the database file
//! and the record's key; a record that decodes encodes and decodes back to
//! itself (crash recovery rewrites records it read).

#![no_main]

use std::path::Path;

use adeploy::history::{AuditEntry, DecisionRecord, MetricSample, decode_deployment};
use libfuzzer_sys::fuzz_target;

const DB: &str = "fuzz/deployment_history.db";

fuzz_target!(|data: &[u8]| {
    let db = Path::new(DB);
    match decode_deployment(db, "fuzz", data) {
        Ok(record) => {
            let bytes = serde_json::to_vec(&record).expect("a decoded record encodes");
            let again = decode_deployment(db, "fuzz", &bytes)
                .unwrap_or_else(|e| panic!("re-encoded record does not decode: {e}"));
            assert_eq!(record, again, "record changed in a round trip");
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.starts_with(DB), "error does not name the file: {msg:?}");
            assert!(
                msg.contains("deployments/fuzz"),
                "error does not name the key: {msg:?}"
            );
            assert!(
                !msg.contains(['\n', '\r']),
                "error is not one line: {msg:?}"
            );
        }
    }
    let _ = serde_json::from_slice::<DecisionRecord>(data);
    let _ = serde_json::from_slice::<MetricSample>(data);
    let _ = serde_json::from_slice::<AuditEntry>(data);
});
