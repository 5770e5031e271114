//! Export and import as JSON Lines, and the items both backends store in
//! bulk (an import, a journal replay).
//!
//! The format, one JSON object per line:
//!
//! ```text
//! {"format":"adeploy-history","version":1}
//! {"type":"deployment","record":{...DeploymentRecord...}}
//! {"type":"decision","deployment_id":"deploy_…","seq":0,"record":{...DecisionRecord...}}
//! {"type":"sample","deployment_id":"deploy_…","seq":0,"record":{...MetricSample...}}
//! {"type":"audit","record":{...AuditEntry...}}
//! {"type":"blob","name":"strategy_model","base64":"…"}
//! ```
//!
//! Deployments come in start order, then decisions and samples by
//! deployment id (byte order) and sequence number, then the audit log oldest
//! first, then blobs by name, so two stores with the same contents export
//! the same bytes whatever their backend. Each `record` is the stored JSON
//! text itself, not a re-encoding: a record (even one with fields this
//! adeploy does not know) survives export → import → export byte for byte.
//!
//! Import is idempotent: deployments replace by id, decisions and samples
//! keep their sequence numbers (a range already present is skipped), and an
//! audit entry identical to one already stored for the same millisecond is
//! skipped. Importing the same file twice, or into a store that already has
//! part of it (a migration that was interrupted), gives the same store.

use std::io::{BufRead, Write};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::codec::ChunkKind;
use super::{AuditEntry, DecisionRecord, DeploymentRecord, HistoryError, MetricSample};

/// The `format` of the header line.
pub const EXPORT_FORMAT: &str = "adeploy-history";
/// The version of the line format this adeploy writes and reads.
pub const EXPORT_VERSION: u32 = 1;
/// Items stored per transaction during an import.
const BATCH: usize = 500;

/// What an export wrote or an import read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferSummary {
    /// Deployment records.
    pub deployments: u64,
    /// Decision log entries.
    pub decisions: u64,
    /// Metric samples.
    pub samples: u64,
    /// Audit log entries.
    pub audit: u64,
    /// Blobs (the model).
    pub blobs: u64,
}

/// One unit a backend stores: from an import, or from the journal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item {
    /// A deployment record and its JSON text.
    Deployment {
        json: Vec<u8>,
        record: Box<DeploymentRecord>,
    },
    /// Consecutive records of one series, numbered from `first_seq`.
    Chunk {
        deployment_id: String,
        kind: ChunkKind,
        first_seq: u64,
        records: Vec<Vec<u8>>,
    },
    /// An audit entry's JSON text and its timestamp in milliseconds.
    Audit { json: Vec<u8>, ts_ms: i64 },
    /// A blob.
    Blob { name: String, bytes: Vec<u8> },
    /// A blob deleted (journal only).
    DeleteBlob { name: String },
}

impl Item {
    /// The item as one journal line (without the newline).
    pub(crate) fn to_line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        match self {
            Item::Deployment { json, .. } => {
                out.extend_from_slice(br#"{"type":"deployment","record":"#);
                out.extend_from_slice(json);
            }
            Item::Chunk {
                deployment_id,
                kind,
                first_seq,
                records,
            } => {
                out.extend_from_slice(br#"{"type":"chunk","series":"#);
                out.extend_from_slice(json_string(kind.name()).as_bytes());
                out.extend_from_slice(br#","deployment_id":"#);
                out.extend_from_slice(json_string(deployment_id).as_bytes());
                out.extend_from_slice(
                    format!(r#","first_seq":{first_seq},"records":["#).as_bytes(),
                );
                for (i, r) in records.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(r);
                }
                out.push(b']');
            }
            Item::Audit { json, .. } => {
                out.extend_from_slice(br#"{"type":"audit","record":"#);
                out.extend_from_slice(json);
            }
            Item::Blob { name, bytes } => {
                out.extend_from_slice(br#"{"type":"blob","name":"#);
                out.extend_from_slice(json_string(name).as_bytes());
                out.extend_from_slice(br#","base64":""#);
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .as_bytes(),
                );
                out.push(b'"');
            }
            Item::DeleteBlob { name } => {
                out.extend_from_slice(br#"{"type":"delete_blob","name":"#);
                out.extend_from_slice(json_string(name).as_bytes());
            }
        }
        out.push(b'}');
        out
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Writes export lines; the backends feed it in the export order.
pub(crate) struct ExportSink<'a> {
    out: &'a mut (dyn Write + Send),
    name: String,
    pub(crate) summary: TransferSummary,
}

impl std::fmt::Debug for ExportSink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSink")
            .field("name", &self.name)
            .finish()
    }
}

impl<'a> ExportSink<'a> {
    /// Starts an export to `out` (named `name` in errors) with the header line.
    pub(crate) fn new(out: &'a mut (dyn Write + Send), name: &str) -> Result<Self, HistoryError> {
        let mut sink = ExportSink {
            out,
            name: name.to_owned(),
            summary: TransferSummary::default(),
        };
        let header = format!(r#"{{"format":"{EXPORT_FORMAT}","version":{EXPORT_VERSION}}}"#);
        sink.line(&[header.as_bytes()])?;
        Ok(sink)
    }

    pub(crate) fn deployment(&mut self, json: &[u8]) -> Result<(), HistoryError> {
        self.summary.deployments += 1;
        self.line(&[br#"{"type":"deployment","record":"#, json, b"}"])
    }

    pub(crate) fn series(
        &mut self,
        kind: ChunkKind,
        deployment_id: &str,
        seq: u64,
        json: &[u8],
    ) -> Result<(), HistoryError> {
        let tag: &[u8] = match kind {
            ChunkKind::Decisions => {
                self.summary.decisions += 1;
                br#"{"type":"decision","deployment_id":"#
            }
            ChunkKind::Samples => {
                self.summary.samples += 1;
                br#"{"type":"sample","deployment_id":"#
            }
        };
        let id = json_string(deployment_id);
        let seq = format!(r#","seq":{seq},"record":"#);
        self.line(&[tag, id.as_bytes(), seq.as_bytes(), json, b"}"])
    }

    pub(crate) fn audit(&mut self, json: &[u8]) -> Result<(), HistoryError> {
        self.summary.audit += 1;
        self.line(&[br#"{"type":"audit","record":"#, json, b"}"])
    }

    pub(crate) fn blob(&mut self, name: &str, bytes: &[u8]) -> Result<(), HistoryError> {
        self.summary.blobs += 1;
        let name = json_string(name);
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        self.line(&[
            br#"{"type":"blob","name":"#,
            name.as_bytes(),
            br#","base64":""#,
            data.as_bytes(),
            br#""}"#,
        ])
    }

    pub(crate) fn finish(self) -> Result<TransferSummary, HistoryError> {
        self.out.flush().map_err(|source| self.io_error(source))?;
        Ok(self.summary)
    }

    fn line(&mut self, parts: &[&[u8]]) -> Result<(), HistoryError> {
        for part in parts {
            if let Err(source) = self.out.write_all(part) {
                return Err(self.io_error(source));
            }
        }
        self.out
            .write_all(b"\n")
            .map_err(|source| self.io_error(source))
    }

    fn io_error(&self, source: std::io::Error) -> HistoryError {
        HistoryError::Io {
            path: self.name.clone().into(),
            action: "write the export",
            source,
        }
    }
}

/// One line as read (export or journal), before validation.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    format: Option<String>,
    version: Option<u32>,
    #[serde(borrow)]
    record: Option<&'a RawValue>,
    deployment_id: Option<String>,
    seq: Option<u64>,
    series: Option<String>,
    first_seq: Option<u64>,
    #[serde(borrow)]
    records: Option<Vec<&'a RawValue>>,
    name: Option<String>,
    base64: Option<String>,
}

/// Which lines a reader accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// An export file: a header, then records one per line.
    Export,
    /// The local journal: chunks as appended, blob deletions, no header.
    Journal,
}

/// Parses one line into an item. `Ok(None)` for the header and blank lines.
pub(crate) fn parse_line(
    text: &str,
    dialect: Dialect,
    line: usize,
    source_name: &str,
) -> Result<Option<Item>, HistoryError> {
    let bad = |reason: String| HistoryError::BadLine {
        source_name: source_name.to_owned(),
        line,
        reason,
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let parsed: LineIn<'_> =
        serde_json::from_str(text).map_err(|e| bad(format!("not a history line: {e}")))?;
    let Some(kind) = parsed.kind.as_deref() else {
        return match (dialect, parsed.format.as_deref(), parsed.version) {
            (Dialect::Export, Some(EXPORT_FORMAT), Some(v)) if v <= EXPORT_VERSION => Ok(None),
            (Dialect::Export, Some(EXPORT_FORMAT), Some(v)) => Err(bad(format!(
                "written by a newer adeploy (format version {v}; this one reads up to {EXPORT_VERSION}); upgrade adeploy"
            ))),
            _ => Err(bad("a line without a \"type\"".to_owned())),
        };
    };
    let payload = |what: &str| {
        parsed
            .record
            .ok_or_else(|| bad(format!("a {what} line without a \"record\"")))
    };
    let id = || {
        parsed
            .deployment_id
            .clone()
            .ok_or_else(|| bad(format!("a {kind} line without a \"deployment_id\"")))
    };
    let item = match (kind, dialect) {
        ("deployment", _) => {
            let raw = payload("deployment")?;
            let record: DeploymentRecord = serde_json::from_str(raw.get())
                .map_err(|e| bad(format!("not a deployment record: {e}")))?;
            Item::Deployment {
                json: raw.get().as_bytes().to_vec(),
                record: Box::new(record),
            }
        }
        ("decision" | "sample", Dialect::Export) => {
            let raw = payload(kind)?;
            let series = if kind == "decision" {
                serde_json::from_str::<DecisionRecord>(raw.get())
                    .map_err(|e| bad(format!("not a decision record: {e}")))?;
                ChunkKind::Decisions
            } else {
                serde_json::from_str::<MetricSample>(raw.get())
                    .map_err(|e| bad(format!("not a metric sample: {e}")))?;
                ChunkKind::Samples
            };
            Item::Chunk {
                deployment_id: id()?,
                kind: series,
                first_seq: parsed
                    .seq
                    .ok_or_else(|| bad(format!("a {kind} line without a \"seq\"")))?,
                records: vec![raw.get().as_bytes().to_vec()],
            }
        }
        ("chunk", Dialect::Journal) => {
            let series = match parsed.series.as_deref() {
                Some("decisions") => ChunkKind::Decisions,
                Some("metric_samples") => ChunkKind::Samples,
                other => return Err(bad(format!("unknown series {other:?}"))),
            };
            Item::Chunk {
                deployment_id: id()?,
                kind: series,
                first_seq: parsed
                    .first_seq
                    .ok_or_else(|| bad("a chunk without \"first_seq\"".to_owned()))?,
                records: parsed
                    .records
                    .unwrap_or_default()
                    .iter()
                    .map(|r| r.get().as_bytes().to_vec())
                    .collect(),
            }
        }
        ("audit", _) => {
            let raw = payload("audit")?;
            let entry: AuditEntry = serde_json::from_str(raw.get())
                .map_err(|e| bad(format!("not an audit entry: {e}")))?;
            Item::Audit {
                json: raw.get().as_bytes().to_vec(),
                ts_ms: entry.timestamp.timestamp_millis(),
            }
        }
        ("blob", _) => {
            let name = parsed
                .name
                .ok_or_else(|| bad("a blob without a \"name\"".to_owned()))?;
            let data = parsed
                .base64
                .ok_or_else(|| bad("a blob without \"base64\" data".to_owned()))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(data.as_bytes())
                .map_err(|e| bad(format!("blob {name}: not base64: {e}")))?;
            Item::Blob { name, bytes }
        }
        ("delete_blob", Dialect::Journal) => Item::DeleteBlob {
            name: parsed
                .name
                .ok_or_else(|| bad("a delete_blob without a \"name\"".to_owned()))?,
        },
        (other, _) => return Err(bad(format!("unknown line type {other:?}"))),
    };
    Ok(Some(item))
}

/// Reads an export from `input` and hands batches of items to `apply`,
/// grouping consecutive records of one series into one chunk. Every line is
/// checked before anything of its batch is stored; a bad line stops the
/// import with [`HistoryError::BadLine`] (earlier batches stay stored, and
/// importing the fixed file again completes it).
pub(crate) async fn import_lines<F, Fut>(
    input: &mut (dyn BufRead + Send),
    source_name: &str,
    mut apply: F,
) -> Result<TransferSummary, HistoryError>
where
    F: FnMut(Vec<Item>) -> Fut,
    Fut: std::future::Future<Output = Result<(), HistoryError>>,
{
    let mut summary = TransferSummary::default();
    let mut batch: Vec<Item> = Vec::new();
    let mut buf = String::new();
    let mut line = 0;
    let mut saw_header = false;
    loop {
        buf.clear();
        let read = input
            .read_line(&mut buf)
            .map_err(|source| HistoryError::Io {
                path: source_name.into(),
                action: "read the import file",
                source,
            })?;
        if read == 0 {
            break;
        }
        line += 1;
        if buf.trim().is_empty() {
            continue;
        }
        if !saw_header {
            // The first line must be the header (a newer version's is
            // refused by `parse_line` with its own message).
            let is_header = serde_json::from_str::<serde_json::Value>(&buf)
                .is_ok_and(|v| v.get("format").is_some() && v.get("type").is_none());
            if !is_header {
                return Err(HistoryError::BadLine {
                    source_name: source_name.to_owned(),
                    line,
                    reason: format!(
                        "an export starts with the header line {{\"format\":\"{EXPORT_FORMAT}\",\"version\":{EXPORT_VERSION}}}"
                    ),
                });
            }
            parse_line(&buf, Dialect::Export, line, source_name)?;
            saw_header = true;
            continue;
        }
        let Some(item) = parse_line(&buf, Dialect::Export, line, source_name)? else {
            continue;
        };
        match &item {
            Item::Deployment { .. } => summary.deployments += 1,
            Item::Chunk { kind, .. } => match kind {
                ChunkKind::Decisions => summary.decisions += 1,
                ChunkKind::Samples => summary.samples += 1,
            },
            Item::Audit { .. } => summary.audit += 1,
            Item::Blob { .. } => summary.blobs += 1,
            Item::DeleteBlob { .. } => {}
        }
        // Extend the previous chunk when this record continues it.
        if let (
            Some(Item::Chunk {
                deployment_id,
                kind,
                first_seq,
                records,
            }),
            Item::Chunk {
                deployment_id: id,
                kind: k,
                first_seq: seq,
                records: one,
            },
        ) = (batch.last_mut(), &item)
            && deployment_id == id
            && kind == k
            && first_seq.checked_add(records.len() as u64) == Some(*seq)
        {
            records.extend(one.iter().cloned());
            continue;
        }
        if batch.len() >= BATCH {
            apply(std::mem::take(&mut batch)).await?;
        }
        batch.push(item);
    }
    if !batch.is_empty() {
        apply(batch).await?;
    }
    Ok(summary)
}
