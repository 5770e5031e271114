//! How records are stored by both backends: JSON, compressed with zstd.
//!
//! Why JSON inside zstd: JSON keeps records readable by older and newer
//! adeploy versions without a migration (see `records.rs`), and it is the
//! export format, so a record leaves the store byte for byte as it went in.
//! zstd takes away most of JSON's repetition (field names, timestamps). The
//! decision log and the metric samples of a deployment are stored in
//! *chunks*: one compressed JSON array per append, because small records
//! compress poorly one by one and well together.
//!
//! Decoding is self-describing: bytes that start with the zstd frame magic
//! are decompressed, anything else is taken as plain JSON (what schema
//! version 1 of the redb history stored).

use std::io::Read;

use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

/// The first four bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// zstd's default level: most of the gain for little CPU.
const LEVEL: i32 = 3;
/// A stored value never decompresses to more than this (a damaged or hostile
/// frame must not exhaust memory).
const MAX_DECODED: u64 = 256 << 20;

/// Which per-deployment series a chunk belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum ChunkKind {
    Decisions,
    Samples,
}

impl ChunkKind {
    pub(crate) fn code(self) -> u8 {
        match self {
            ChunkKind::Decisions => 1,
            ChunkKind::Samples => 2,
        }
    }

    pub(crate) fn from_code(code: u8) -> Option<ChunkKind> {
        match code {
            1 => Some(ChunkKind::Decisions),
            2 => Some(ChunkKind::Samples),
            _ => None,
        }
    }

    /// The table name in messages and the `type` of an export line.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ChunkKind::Decisions => "decisions",
            ChunkKind::Samples => "metric_samples",
        }
    }
}

/// zstd-compresses `json`.
pub(crate) fn compress(json: &[u8]) -> Vec<u8> {
    // Compressing an in-memory buffer only fails on allocation failure; the
    // plain JSON is still a valid stored value then.
    zstd::bulk::compress(json, LEVEL).unwrap_or_else(|_| json.to_vec())
}

/// The JSON of a stored value (decompressed when it is compressed).
pub(crate) fn decompress(bytes: &[u8]) -> Result<Vec<u8>, String> {
    if !bytes.starts_with(&ZSTD_MAGIC) {
        return Ok(bytes.to_vec());
    }
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    decoder
        .take(MAX_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("damaged compressed value: {e}"))?;
    if out.len() as u64 > MAX_DECODED {
        return Err(format!(
            "a compressed value decompresses to more than {MAX_DECODED} bytes"
        ));
    }
    Ok(out)
}

/// A stored record, decoded; a decompression failure is reported as a JSON
/// error so that callers have one failure type per record.
pub(crate) fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    let json = decompress(bytes).map_err(<serde_json::Error as serde::de::Error>::custom)?;
    serde_json::from_slice(&json)
}

/// The JSON texts of records, as one stored chunk (a compressed JSON array).
pub(crate) fn encode_chunk<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut json = Vec::with_capacity(256);
    json.push(b'[');
    for (i, record) in records.into_iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        json.extend_from_slice(record);
    }
    json.push(b']');
    compress(&json)
}

/// The JSON texts of a stored chunk's records, in order.
pub(crate) fn decode_chunk(bytes: &[u8]) -> Result<Vec<Box<RawValue>>, String> {
    let json = decompress(bytes)?;
    serde_json::from_slice::<Vec<Box<RawValue>>>(&json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_plain_json_still_reads() {
        let value = serde_json::json!({"a": [1, 2, 3], "b": "x".repeat(500)});
        let stored = compress(&serde_json::to_vec(&value).unwrap());
        assert!(stored.starts_with(&ZSTD_MAGIC));
        assert!(stored.len() < 100, "{} bytes", stored.len());
        let back: serde_json::Value = decode_record(&stored).unwrap();
        assert_eq!(back, value);
        let plain: serde_json::Value = decode_record(br#"{"old": true}"#).unwrap();
        assert_eq!(plain, serde_json::json!({"old": true}));
        let mut damaged = stored.clone();
        let last = damaged.len() - 3;
        damaged.truncate(last);
        assert!(decode_record::<serde_json::Value>(&damaged).is_err());
    }

    #[test]
    fn chunks_keep_each_record_byte_for_byte() {
        let records: [&[u8]; 3] = [br#"{"a":1}"#, br#"{"b" : 2.50}"#, b"null"];
        let chunk = encode_chunk(records);
        let back = decode_chunk(&chunk).unwrap();
        let texts: Vec<&str> = back.iter().map(|r| r.get()).collect();
        assert_eq!(texts, [r#"{"a":1}"#, r#"{"b" : 2.50}"#, "null"]);
        assert!(decode_chunk(&encode_chunk([])).unwrap().is_empty());
    }
}
