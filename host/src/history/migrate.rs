//! Migrations of a redb history, inside the write transaction that finds the
//! old version (so each happens whole or not at all).
//!
//! Version 1 stored plain JSON, one row per decision and per sample. Version
//! 2 compresses every value, groups each deployment's decisions and samples
//! into one chunk per series, and maintains the aggregates. Record JSON is
//! kept byte for byte; a record that is not JSON at all stays where it was
//! (deployments) or is left out with a warning (a chunk must be a JSON array).
//! Version 3 counts, per strategy and environment, the deployments whose
//! record holds its feature context (`with_features`: what the model trains
//! on), so the start of a deployment knows it without reading every record,
//! and indexes the `running` deployments, so recovery finds them without
//! reading every record; both are rebuilt from the records.

use std::collections::BTreeMap;
use std::path::Path;

use redb::{ReadableTable, WriteTransaction};

use super::aggregate::{self, Contribution};
use super::codec::{self, ChunkKind};
use super::store::{
    AGG_SERVICE, AGG_STRATEGY, AUDIT, BLOBS, CHUNKS, DEPLOYMENTS, Failure, RUNNING, V1_DECISIONS,
    V1_SAMPLES, create_tables,
};
use super::{DeploymentRecord, DeploymentStatus, HistoryError};

/// Records with their sequence numbers.
type Numbered = Vec<(u64, Vec<u8>)>;

pub(super) fn v1_to_v2(txn: &WriteTransaction, path: &Path) -> Result<(), Failure> {
    let tables: Vec<String> = {
        use redb::TableHandle;
        txn.list_tables()?.map(|t| t.name().to_owned()).collect()
    };
    create_tables(txn)?;

    // Deployments: compress in place.
    {
        let mut table = txn.open_table(DEPLOYMENTS)?;
        let rows: Vec<(String, Vec<u8>)> = table
            .iter()?
            .map(|e| e.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (id, json) in rows {
            table.insert(id.as_str(), codec::compress(&json).as_slice())?;
        }
    }

    // Decisions and samples: one chunk per deployment and series.
    let mut series: BTreeMap<(String, ChunkKind), Numbered> = BTreeMap::new();
    if tables.iter().any(|t| t == "decisions") {
        let table = txn.open_table(V1_DECISIONS)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (id, seq) = key.value();
            series
                .entry((id.to_owned(), ChunkKind::Decisions))
                .or_default()
                .push((seq, value.value().to_vec()));
        }
    }
    if tables.iter().any(|t| t == "metric_samples") {
        let table = txn.open_table(V1_SAMPLES)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (id, _, _) = key.value();
            let list = series
                .entry((id.to_owned(), ChunkKind::Samples))
                .or_default();
            let seq = list.len() as u64;
            list.push((seq, value.value().to_vec()));
        }
    }
    {
        let mut chunks = txn.open_table(CHUNKS)?;
        for ((id, kind), rows) in &series {
            let valid: Vec<&(u64, Vec<u8>)> = rows
                .iter()
                .filter(|(seq, json)| {
                    let ok = serde_json::from_slice::<&serde_json::value::RawValue>(json).is_ok();
                    if !ok {
                        tracing::warn!(path = %path.display(), key = %format!("{}/{id}#{seq}", kind.name()), "left out of the migration: not JSON");
                    }
                    ok
                })
                .collect();
            let (Some(first), Some(last)) = (valid.first(), valid.last()) else {
                continue;
            };
            // Keep the numbering: the chunk covers first..=last.
            let first_seq = first.0;
            let span = last.0 - first.0 + 1;
            let body = codec::encode_chunk(valid.iter().map(|(_, json)| json.as_slice()));
            chunks.insert(
                (id.as_str(), kind.code(), first_seq),
                (span, valid.len() as u64, body.as_slice()),
            )?;
        }
    }
    for name in ["decisions", "metric_samples"] {
        if tables.iter().any(|t| t == name) {
            let handle: redb::TableDefinition<(), ()> = redb::TableDefinition::new(name);
            txn.delete_table(handle)?;
        }
    }

    // Audit log and blobs: compress in place.
    {
        let mut table = txn.open_table(AUDIT)?;
        let rows: Vec<((i64, u64), Vec<u8>)> = table
            .iter()?
            .map(|e| e.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (key, json) in rows {
            table.insert(key, codec::compress(&json).as_slice())?;
        }
    }
    {
        let mut table = txn.open_table(BLOBS)?;
        let rows: Vec<(String, Vec<u8>)> = table
            .iter()?
            .map(|e| e.map(|(k, v)| (k.value().to_owned(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (name, bytes) in rows {
            table.insert(name.as_str(), codec::compress(&bytes).as_slice())?;
        }
    }

    rebuild_derived(txn, path)
}

/// Version 2 to 3: the aggregates gain `with_features`, and the `running`
/// index appears; both rebuilt from the records.
pub(super) fn v2_to_v3(txn: &WriteTransaction, path: &Path) -> Result<(), Failure> {
    create_tables(txn)?;
    rebuild_derived(txn, path)
}

/// Replaces both aggregate tables and the `running` index with what the
/// stored (compressed) deployment records say.
fn rebuild_derived(txn: &WriteTransaction, path: &Path) -> Result<(), Failure> {
    let mut contributions = Vec::new();
    let mut running = Vec::new();
    {
        let table = txn.open_table(DEPLOYMENTS)?;
        for entry in table.iter()? {
            let (key, value) = entry?;
            if let Ok(record) = codec::decode_record::<DeploymentRecord>(value.value()) {
                if record.status == DeploymentStatus::Running {
                    running.push(key.value().to_owned());
                }
                if let Some(c) = Contribution::of(&record) {
                    contributions.push(c);
                }
            }
        }
    }
    {
        let mut index = txn.open_table(RUNNING)?;
        index.retain(|_, _| false)?;
        for id in &running {
            index.insert(id.as_str(), ())?;
        }
    }
    txn.open_table(AGG_STRATEGY)?.retain(|_, _| false)?;
    txn.open_table(AGG_SERVICE)?.retain(|_, _| false)?;

    // In start order, so that the streaks come out right.
    contributions.sort_by_key(|c| c.started_ms);
    let mut by_strategy = BTreeMap::new();
    let mut by_service = BTreeMap::new();
    for c in &contributions {
        let key = (c.strategy.clone(), c.environment.clone());
        let row =
            aggregate::apply_strategy(by_strategy.remove(&key), &key.0, &key.1, None, Some(c));
        by_strategy.insert(key, row);
        for s in &c.services {
            let key = (s.clone(), c.environment.clone());
            let row =
                aggregate::apply_service(by_service.remove(&key), &key.0, &key.1, None, Some(c));
            by_service.insert(key, row);
        }
    }
    let mut table = txn.open_table(AGG_STRATEGY)?;
    for ((strategy, environment), row) in &by_strategy {
        table.insert(
            (strategy.as_str(), environment.as_str()),
            json(path, row)?.as_slice(),
        )?;
    }
    let mut table = txn.open_table(AGG_SERVICE)?;
    for ((service, environment), row) in &by_service {
        table.insert(
            (service.as_str(), environment.as_str()),
            json(path, row)?.as_slice(),
        )?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(path: &Path, value: &T) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(value).map_err(|source| {
        Failure::History(HistoryError::Encode {
            path: path.to_path_buf(),
            key: "aggregates".to_string(),
            source,
        })
    })
}
