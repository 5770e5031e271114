//! The history's error type.
//!
//! Every message starts with (or names) the file it is about and says what
//! the user can do, because the usual fix is an action on that file: wait for
//! another run, move a damaged database aside, pick another `--state-dir`.
//! redb's own error types stay private (the source is boxed), so swapping the
//! storage engine does not change the public API.

use std::path::PathBuf;
use std::time::Duration;

/// Boxed source error of the storage engine.
pub type BoxedSource = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong with the history database or the run lock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A directory or file under the state directory could not be created, opened or read.
    #[error("{}: cannot {action}: {source}; check that the state directory is writable or use another --state-dir", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was attempted (`create the state directory`, ...).
        action: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// Another process kept the database open for longer than the open timeout.
    #[error("{}: still in use by another adeploy process after waiting {:.1} s; wait for it to finish and retry", path.display(), waited.as_secs_f64())]
    Locked {
        /// The database file.
        path: PathBuf,
        /// How long this process waited.
        waited: Duration,
    },

    /// Another adeploy run holds the state directory's run lock.
    #[error("another adeploy run{} holds the state directory {} (lock file {}); wait for it to finish or use another --state-dir", holder(*pid), state_dir.display(), lock_path.display())]
    Busy {
        /// The holder's process id, when its lock file could be read.
        pid: Option<u32>,
        /// The contended state directory.
        state_dir: PathBuf,
        /// The lock file.
        lock_path: PathBuf,
    },

    /// The file is not an adeploy history database (not redb, damaged, or another program's).
    #[error("{}: not a readable adeploy history database ({reason}); adeploy does not delete or replace it: move it aside and run again to start a new history", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// The database was written by a newer adeploy (or a redb format this one cannot read).
    #[error("{}: written by a newer or incompatible adeploy ({detail}); adeploy does not change it: upgrade adeploy, or move the file aside to start a new history", path.display())]
    Incompatible {
        /// The database file.
        path: PathBuf,
        /// Which version was found and which are supported.
        detail: String,
    },

    /// A record asked for by key no longer decodes (listings skip such records instead).
    #[error("{}: record {key} cannot be decoded ({}); it was written by another adeploy version or damaged", path.display(), crate::config::one_line(&source.to_string()))]
    Undecodable {
        /// The database file.
        path: PathBuf,
        /// The table and key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// A record could not be encoded as JSON.
    #[error("{}: cannot encode record {key}: {source}", path.display())]
    Encode {
        /// The database file.
        path: PathBuf,
        /// The table and key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },

    /// The run lock passed in guards another state directory than this history.
    #[error("{}: the run lock passed in guards another state directory ({}); acquire the run lock of this state directory first", path.display(), lock_path.display())]
    WrongLock {
        /// The database file.
        path: PathBuf,
        /// The lock file that was held.
        lock_path: PathBuf,
    },

    /// Any other failure of the storage engine (I/O while reading or committing, ...).
    #[error("{}: history database error: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// The storage engine's error.
        #[source]
        source: BoxedSource,
    },

    /// The PostgreSQL history cannot be reached (at start, or for a read).
    #[error("{url}: cannot reach the history database ({}); check the URL, that the server is running, and the password (history.password, PGPASSWORD or ~/.pgpass)", crate::config::one_line(&crate::config::redact_url(&source.to_string())))]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        #[source]
        source: BoxedSource,
    },

    /// A statement of the PostgreSQL history failed (not a lost connection).
    #[error("{url}: cannot {action}: {}", crate::config::one_line(&crate::config::redact_url(&source.to_string())))]
    Postgres {
        /// The URL, password redacted.
        url: String,
        /// What was attempted.
        action: &'static str,
        /// The server's or the client's error.
        #[source]
        source: BoxedSource,
    },

    /// The history settings cannot be used (a bad URL, an unset password variable).
    #[error("{url}: {}", crate::config::one_line(reason))]
    Settings {
        /// The URL, password redacted.
        url: String,
        /// What is wrong and what to do.
        reason: String,
    },

    /// The PostgreSQL history was migrated by a newer adeploy.
    #[error(
        "{url}: the history schema is at version {found}, this adeploy knows versions up to {supported}; adeploy does not change it: upgrade adeploy on this runner"
    )]
    NewerSchema {
        /// The URL, password redacted.
        url: String,
        /// The version in the database.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },

    /// Another runner is deploying some of the same services to the same
    /// environment, and the wait for it ran out.
    #[error("{environment}: {} {} being deployed by {}; waited {:.1} s: wait for it to finish, or raise --lock-timeout", services.join(", "), if services.len() == 1 { "is" } else { "are" }, holder.as_ref().map_or_else(|| "another runner".to_string(), ToString::to_string), waited.as_secs_f64())]
    DeploymentBusy {
        /// The environment.
        environment: String,
        /// The requested services that are held.
        services: Vec<String>,
        /// Who holds them, when known.
        holder: Option<Box<super::LockHolder>>,
        /// How long this run waited.
        waited: Duration,
    },

    /// A line of an import file (or of the local journal) is not a history record.
    #[error("{source_name}:{line}: {}", crate::config::one_line(reason))]
    BadLine {
        /// The file (or `-` for standard input).
        source_name: String,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

impl HistoryError {
    /// Whether the operator has to act before anything can be attempted
    /// (the CLI exits with 2): a damaged, foreign, newer or unreachable
    /// history, a busy lock, a bad import file.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            HistoryError::Corrupt { .. }
                | HistoryError::Incompatible { .. }
                | HistoryError::Busy { .. }
                | HistoryError::Locked { .. }
                | HistoryError::Unreachable { .. }
                | HistoryError::Settings { .. }
                | HistoryError::NewerSchema { .. }
                | HistoryError::DeploymentBusy { .. }
                | HistoryError::BadLine { .. }
        )
    }
}

impl HistoryError {
    /// Whether another run holds the lock this one asked for, and the wait
    /// ran out ([`HistoryError::Busy`], [`HistoryError::DeploymentBusy`]):
    /// nothing was attempted, and a later try may succeed.
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            HistoryError::Busy { .. } | HistoryError::DeploymentBusy { .. }
        )
    }
}

fn holder(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}
