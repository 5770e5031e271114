//! The run lock: one deploying adeploy per state directory.
//!
//! Why a separate lock file and not the database's own lock: the database is
//! opened and closed around every operation (see the module docs of
//! [`history`](super)), so it cannot say "a deployment is in progress".
//! `run.lock` is held for the whole run with an OS file lock (`flock` on Unix,
//! `LockFileEx` on Windows, through std's `File::try_lock`), which the kernel
//! releases when the process dies however it dies. That makes "a `running`
//! record while nobody holds the lock" a reliable sign of a crash.
//!
//! The holder writes its pid into the file (and, on a second line, who it is:
//! deployment id, user, host, since when) so a waiting run can say who it is
//! waiting for. These are only for messages: the lock, not the pid, decides.

use std::fs::{self, File, TryLockError};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{HistoryError, LockHolder, data_dir};

/// Name of the lock file inside `<state_dir>/deployment_data/`.
pub const LOCK_FILE: &str = "run.lock";

/// Proof that this process is the one deployment writer of a state directory.
///
/// Released when dropped (and by the OS if the process dies).
#[derive(Debug)]
pub struct RunLock {
    file: File,
    path: PathBuf,
    state_dir: PathBuf,
}

impl RunLock {
    /// Takes the run lock of `state_dir`, polling for up to `wait` while another
    /// run holds it. Creates `<state_dir>/deployment_data/` if missing.
    ///
    /// Fails with [`HistoryError::Busy`] (naming the holder's pid when known) if
    /// the lock is still held after `wait`; `Duration::ZERO` tries once.
    pub fn acquire(state_dir: &Path, wait: Duration) -> Result<RunLock, HistoryError> {
        RunLock::acquire_as(state_dir, wait, None, &mut |_| {})
    }

    /// [`RunLock::acquire`] that records `holder` in the lock file for others'
    /// messages, and calls `on_wait` with the current holder (as far as its
    /// lock file says) when it starts waiting.
    pub fn acquire_as(
        state_dir: &Path,
        wait: Duration,
        holder: Option<&LockHolder>,
        on_wait: &mut dyn FnMut(Option<LockHolder>),
    ) -> Result<RunLock, HistoryError> {
        let dir = data_dir(state_dir);
        crate::fs::private_dir(&dir).map_err(|source| HistoryError::Io {
            path: dir.clone(),
            action: "create the state directory",
            source,
        })?;
        let path = dir.join(LOCK_FILE);
        let file = crate::fs::open_private_file(&path).map_err(|source| HistoryError::Io {
            path: path.clone(),
            action: "open the run lock",
            source,
        })?;

        let start = Instant::now();
        let mut delay = Duration::from_millis(10);
        let mut announced = false;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    let waited = start.elapsed();
                    if waited >= wait {
                        return Err(HistoryError::Busy {
                            pid: holder_pid(&path),
                            state_dir: state_dir.to_path_buf(),
                            lock_path: path,
                        });
                    }
                    if !announced {
                        announced = true;
                        tracing::info!(
                            lock = %path.display(),
                            holder_pid = ?holder_pid(&path),
                            "another adeploy run holds the state directory; waiting"
                        );
                        on_wait(read_holder(&path));
                    }
                    std::thread::sleep(delay.min(wait - waited));
                    delay = (delay * 2).min(Duration::from_millis(200));
                }
                Err(TryLockError::Error(source)) => {
                    return Err(HistoryError::Io {
                        path,
                        action: "lock the run lock",
                        source,
                    });
                }
            }
        }

        let mut lock = RunLock {
            file,
            path,
            state_dir: state_dir.to_path_buf(),
        };
        // Dropping `lock` on error releases the OS lock again.
        lock.write_pid(holder).map_err(|source| HistoryError::Io {
            path: lock.path.clone(),
            action: "write the run lock",
            source,
        })?;
        Ok(lock)
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The state directory this lock guards (as given to [`RunLock::acquire`]).
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    fn write_pid(&mut self, holder: Option<&LockHolder>) -> std::io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        writeln!(self.file, "{}", std::process::id())?;
        if let Some(holder) = holder {
            let json = serde_json::to_string(holder).map_err(std::io::Error::other)?;
            writeln!(self.file, "{json}")?;
        }
        self.file.flush()
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Best effort: a stale pid would only make a later message misleading.
        // The OS lock goes with the file handle right after.
        if let Err(err) = self.file.set_len(0) {
            tracing::debug!(lock = %self.path.display(), %err, "cannot clear the run lock's pid");
        }
    }
}

/// Whether some process holds the run lock of `state_dir`, without waiting.
///
/// Takes a shared lock for an instant: it never blocks, and concurrent
/// readers do not exclude each other. A missing lock file means no writer.
pub(super) fn writer_active(state_dir: &Path) -> bool {
    let path = data_dir(state_dir).join(LOCK_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(err) => {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(lock = %path.display(), %err, "cannot open the run lock; assuming no deployment is running");
            }
            return false;
        }
    };
    match file.try_lock_shared() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(err)) => {
            tracing::warn!(lock = %path.display(), %err, "cannot test the run lock; assuming no deployment is running");
            false
        }
    }
}

/// The pid recorded in a lock file, if it can be read (on Windows the holder's
/// lock makes the file unreadable to others, so this is `None` there).
pub(super) fn holder_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The holder recorded in a lock file (its second line), if any.
pub(super) fn read_holder(path: &Path) -> Option<LockHolder> {
    let text = fs::read_to_string(path).ok()?;
    serde_json::from_str(text.lines().nth(1)?).ok()
}

/// Name of the retraining lock file inside `<state_dir>/deployment_data/`.
pub const RETRAIN_LOCK_FILE: &str = "retrain.lock";

/// Takes the retraining lock of a state directory without waiting: `None`
/// when another process is retraining.
pub(super) fn try_retrain_lock(state_dir: &Path) -> Result<Option<File>, HistoryError> {
    let dir = data_dir(state_dir);
    crate::fs::private_dir(&dir).map_err(|source| HistoryError::Io {
        path: dir.clone(),
        action: "create the state directory",
        source,
    })?;
    let path = dir.join(RETRAIN_LOCK_FILE);
    let file = crate::fs::open_private_file(&path).map_err(|source| HistoryError::Io {
        path: path.clone(),
        action: "open the retraining lock",
        source,
    })?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(source)) => Err(HistoryError::Io {
            path,
            action: "lock the retraining lock",
            source,
        }),
    }
}
