//! The local journal: where a PostgreSQL history's writes go while the
//! database cannot be reached, until they are replayed.
//!
//! Why a file in the state directory: a deployment that loses its database
//! mid-run must still finish or roll back as planned, and what it records
//! must survive even if the runner is then stopped. Each write is one line
//! (the item format of `transfer.rs`), appended with one `write` and made
//! durable with `fsync` before the write call returns. Items carry their own
//! keys (deployment id, chunk sequence numbers, the audit entry itself), so
//! a replay stores each at most once however often it is repeated.
//!
//! Replay without losing appends: under the journal's file lock, the journal
//! is renamed to `history_journal.<nanos>.replay` (atomic), so new writes
//! start a fresh journal while the renamed one is applied; it is deleted
//! only once every item is stored. A replay cut short (connection lost
//! again, process killed) leaves the file for the next one, and files are
//! replayed oldest first. A process replaying a file holds a lock on it, so
//! two runners of one state directory never apply the same file at once.
//! A torn last line (the process died inside `write`) was never
//! acknowledged and is dropped with a warning; a bad line elsewhere stops
//! the replay and keeps the file.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::transfer::{Dialect, Item, parse_line};
use super::{HistoryError, data_dir};

/// File name of the journal inside `<state_dir>/deployment_data/`.
pub const JOURNAL_FILE: &str = "history_journal.jsonl";
const REPLAY_PREFIX: &str = "history_journal.";
const REPLAY_SUFFIX: &str = ".replay";
/// Items stored per transaction during a replay.
const BATCH: usize = 200;

/// The journal of one state directory.
#[derive(Debug, Clone)]
pub(crate) struct Journal {
    dir: PathBuf,
}

impl Journal {
    pub(crate) fn new(state_dir: &Path) -> Journal {
        Journal {
            dir: data_dir(state_dir),
        }
    }

    /// The live journal file.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// Appends `items` durably (one write, then fsync).
    pub(crate) fn append(&self, items: &[Item]) -> Result<(), HistoryError> {
        if items.is_empty() {
            return Ok(());
        }
        let path = self.path();
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| HistoryError::Io {
                path,
                action,
                source,
            }
        };
        fs::create_dir_all(&self.dir).map_err(io("create the state directory"))?;
        let mut text = Vec::new();
        for item in items {
            text.extend_from_slice(&item.to_line());
            text.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open the history journal"))?;
        file.lock().map_err(io("lock the history journal"))?;
        file.write_all(&text)
            .map_err(io("append to the history journal"))?;
        file.sync_data()
            .map_err(io("flush the history journal to disk"))?;
        Ok(())
    }

    /// Whether anything waits to be replayed (the live journal or a replay
    /// file left by an interrupted replay).
    pub(crate) fn has_pending(&self) -> bool {
        fs::metadata(self.path()).is_ok_and(|m| m.len() > 0) || !self.replay_files().is_empty()
    }

    /// Items waiting, counted line by line (for status output).
    pub(crate) fn pending_items(&self) -> usize {
        let mut files = self.replay_files();
        files.push(self.path());
        files
            .iter()
            .filter_map(|p| File::open(p).ok())
            .map(|f| {
                BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.trim().is_empty())
                    .count()
            })
            .sum()
    }

    /// Applies every journaled item with `apply`, oldest first, deleting
    /// each file once all its items are stored. Returns how many items were
    /// applied. On an error the file being replayed stays for the next time.
    pub(crate) async fn replay<F, Fut>(&self, mut apply: F) -> Result<usize, HistoryError>
    where
        F: FnMut(Vec<Item>) -> Fut,
        Fut: std::future::Future<Output = Result<(), HistoryError>>,
    {
        self.rotate()?;
        let mut applied = 0;
        for path in self.replay_files() {
            let file = match File::open(&path) {
                Ok(file) => file,
                // Replayed and deleted by another process meanwhile.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(HistoryError::Io {
                        path,
                        action: "open a history journal replay file",
                        source,
                    });
                }
            };
            match file.try_lock() {
                Ok(()) => {}
                // Another process of this state directory is replaying it.
                Err(TryLockError::WouldBlock) => continue,
                Err(TryLockError::Error(source)) => {
                    return Err(HistoryError::Io {
                        path,
                        action: "lock a history journal replay file",
                        source,
                    });
                }
            }
            // It may have been finished and deleted between listing and locking.
            if !path.exists() {
                continue;
            }
            let items = read_items(&file, &path)?;
            for batch in items.chunks(BATCH) {
                apply(batch.to_vec()).await?;
                applied += batch.len();
            }
            fs::remove_file(&path).map_err(|source| HistoryError::Io {
                path: path.clone(),
                action: "remove a replayed history journal",
                source,
            })?;
            drop(file);
        }
        Ok(applied)
    }

    /// Moves a non-empty live journal aside for replay, under its lock.
    fn rotate(&self) -> Result<(), HistoryError> {
        let path = self.path();
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(source) => {
                return Err(HistoryError::Io {
                    path,
                    action: "open the history journal",
                    source,
                });
            }
        };
        file.lock().map_err(|source| HistoryError::Io {
            path: path.clone(),
            action: "lock the history journal",
            source,
        })?;
        // Renamed by another process while this one waited for the lock: the
        // handle now names the moved file, and the live journal is new.
        let same = fs::metadata(&path)
            .ok()
            .zip(file.metadata().ok())
            .is_some_and(|(on_disk, held)| same_file(&on_disk, &held));
        if !same || file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
            return Ok(());
        }
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let target = self.dir.join(format!(
            "{REPLAY_PREFIX}{nanos:020}-{}{REPLAY_SUFFIX}",
            std::process::id()
        ));
        fs::rename(&path, &target).map_err(|source| HistoryError::Io {
            path,
            action: "move the history journal aside for replay",
            source,
        })?;
        if let Ok(dir) = File::open(&self.dir) {
            // Make the rename durable; a failure only risks replaying again.
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Replay files, oldest first.
    fn replay_files(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(REPLAY_PREFIX) && n.ends_with(REPLAY_SUFFIX))
            })
            .collect();
        files.sort();
        files
    }
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// The items of a journal file. A last line without its newline that does
/// not parse was torn by a crash and is dropped.
fn read_items(file: &File, path: &Path) -> Result<Vec<Item>, HistoryError> {
    let name = path.display().to_string();
    let mut reader = BufReader::new(file);
    let mut items = Vec::new();
    let mut buf = String::new();
    let mut line = 0;
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|source| HistoryError::Io {
                path: path.to_path_buf(),
                action: "read a history journal",
                source,
            })?;
        if read == 0 {
            break;
        }
        line += 1;
        match parse_line(&buf, Dialect::Journal, line, &name) {
            Ok(Some(item)) => items.push(item),
            Ok(None) => {}
            Err(err) if !buf.ends_with('\n') => {
                tracing::warn!(journal = %name, line, %err, "dropping a torn last line of the history journal (its write never completed)");
            }
            Err(err) => return Err(err),
        }
    }
    Ok(items)
}
