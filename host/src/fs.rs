//! Private files and directories under the state directory.
//!
//! The state directory holds the history database (every deployment's
//! decisions and the audit log), the deployment logs (every command's
//! output, which may echo configuration the operator did not mean to share)
//! and the reports. None of it is for other users of the machine, so
//! everything adeploy creates there is private: directories `0700`, files
//! `0600`, whatever the process umask says. One helper for every writer
//! (history, run lock, deployment log, reports, ssh control sockets), so no
//! new file can forget it.
//!
//! The state directory itself may be one the operator chose and already
//! had: adeploy creates it `0700` when it is missing but does not change an
//! existing one; a directory others can enter gets a one-line warning naming
//! it and the fix ([`ensure_state_dir`]). Subdirectories adeploy owns
//! (`deployment_data`, `deployment_logs`, `deployment_reports`, `ssh`) are
//! tightened to `0700` if an earlier version created them wider, and so are
//! the files adeploy opens again (the database, the run lock).
//!
//! Unix only, like the rest of adeploy's process handling.

use std::collections::HashSet;
use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Mode of every directory adeploy creates under the state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file adeploy creates under the state directory.
pub const FILE_MODE: u32 = 0o600;

/// An existing state directory that other users can read or enter.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WideStateDir {
    pub path: PathBuf,
    /// Its permission bits, e.g. `0o755`.
    pub mode: u32,
}

impl std::fmt::Display for WideStateDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = crate::config::one_line(&self.path.display().to_string()).into_owned();
        write!(
            f,
            "state directory {shown} is open to other users (mode {:04o}); it holds deployment logs and the audit log: run `chmod 700 {shown}`",
            self.mode
        )
    }
}

/// Creates `dir` (and missing parents) with mode `0700`; an existing `dir`
/// that is wider is tightened to `0700`. For the directories adeploy owns.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Creates the state directory `dir` (`0700`) when missing. An existing one
/// is left as it is, but if other users can read or enter it the returned
/// value says so (and a `tracing` warning is logged once per directory and
/// process).
pub fn ensure_state_dir(dir: &Path) -> io::Result<Option<WideStateDir>> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(None);
    }
    let wide = WideStateDir {
        path: dir.to_path_buf(),
        mode,
    };
    if first_warning(dir) {
        tracing::warn!("{wide}");
    }
    Ok(Some(wide))
}

/// True the first time `dir`'s warning is asked for in this process: the
/// wide-state-dir warning is said once, by whoever meets it first.
fn first_warning(dir: &Path) -> bool {
    static WARNED: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    WARNED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(dir.to_path_buf())
}

/// The wide-state-dir warning of an existing `dir`, for a caller that shows
/// it itself (the engine publishes it as a deployment event, which the CLI
/// prints): `Some` only the first time in this process, and
/// [`ensure_state_dir`] stays quiet about `dir` afterwards. Creates and
/// changes nothing; a missing or unreadable `dir` has no warning.
pub fn state_dir_warning(dir: &Path) -> Option<WideStateDir> {
    let mode = std::fs::metadata(dir).ok()?.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 || !first_warning(dir) {
        return None;
    }
    Some(WideStateDir {
        path: dir.to_path_buf(),
        mode,
    })
}

/// Open options whose `create`/`create_new` make a `0600` file. Add the
/// access flags: `private_options().append(true).create_new(true).open(p)`.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Opens `path` for reading and writing, creating it `0600` when missing
/// (never truncating); an existing file that is wider is tightened to `0600`.
pub fn open_private_file(path: &Path) -> io::Result<File> {
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode != FILE_MODE && mode & !FILE_MODE & 0o777 != 0 {
        file.set_permissions(Permissions::from_mode(FILE_MODE))?;
    }
    Ok(file)
}

/// Creates `path` as an empty `0600` file when it does not exist (for files
/// another library then opens, like the redb database). An existing file is
/// not opened for writing: it is tightened to `0600` if it is wider and
/// this user may change it, and otherwise left alone (a read-only history
/// must stay readable).
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    match private_options().write(true).create_new(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let _ = tighten(path, FILE_MODE);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Sets `path` to `mode` when its permissions allow more than `mode` does.
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    let current = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if current & !mode & 0o777 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_are_created_and_tightened_to_0700() {
        let tmp = tempfile::tempdir().unwrap();
        let nested = tmp.path().join("a/b");
        private_dir(&nested).unwrap();
        assert_eq!(mode(&nested), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700, "created parents too");

        let wide = tmp.path().join("wide");
        std::fs::create_dir(&wide).unwrap();
        std::fs::set_permissions(&wide, Permissions::from_mode(0o755)).unwrap();
        private_dir(&wide).unwrap();
        assert_eq!(mode(&wide), 0o700);
    }

    #[test]
    fn files_are_created_0600_and_existing_ones_tightened_not_truncated() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        drop(open_private_file(&p).unwrap());
        assert_eq!(mode(&p), 0o600);

        std::fs::write(&p, "keep").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        drop(open_private_file(&p).unwrap());
        assert_eq!(mode(&p), 0o600);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "keep");

        let q = tmp.path().join("g");
        drop(
            private_options()
                .append(true)
                .create_new(true)
                .open(&q)
                .unwrap(),
        );
        assert_eq!(mode(&q), 0o600);

        let r = tmp.path().join("h");
        ensure_private_file(&r).unwrap();
        assert_eq!((mode(&r), std::fs::read(&r).unwrap().len()), (0o600, 0));
        std::fs::write(&r, "data").unwrap();
        std::fs::set_permissions(&r, Permissions::from_mode(0o640)).unwrap();
        ensure_private_file(&r).unwrap();
        assert_eq!(mode(&r), 0o600);
        assert_eq!(std::fs::read_to_string(&r).unwrap(), "data");
    }

    #[test]
    fn a_missing_state_dir_is_created_private_and_a_wide_one_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        assert_eq!(ensure_state_dir(&state).unwrap(), None);
        assert_eq!(mode(&state), 0o700);

        std::fs::set_permissions(&state, Permissions::from_mode(0o755)).unwrap();
        let wide = ensure_state_dir(&state).unwrap().unwrap();
        assert_eq!(wide.mode, 0o755);
        assert_eq!(mode(&state), 0o755, "an existing state dir is not changed");
        let text = wide.to_string();
        assert!(!text.contains('\n'));
        assert!(
            text.starts_with(&format!("state directory {} is open", state.display())),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("run `chmod 700 {}`", state.display())),
            "{text}"
        );
    }

    #[test]
    fn the_wide_state_dir_warning_is_given_once_and_nothing_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        assert_eq!(state_dir_warning(&state), None, "missing: no warning");
        assert!(!state.exists(), "and not created");
        std::fs::create_dir(&state).unwrap();
        std::fs::set_permissions(&state, Permissions::from_mode(0o750)).unwrap();
        let w = state_dir_warning(&state).unwrap();
        assert_eq!(w.mode, 0o750);
        assert_eq!(state_dir_warning(&state), None, "said once per process");
        assert_eq!(mode(&state), 0o750);
    }
}
