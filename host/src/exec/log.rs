//! The deployment log: one append-only text file per deployment.
//!
//! Everything a deployment's commands print, and what the engine decides, ends
//! up in `deploy_YYYYMMDD_HHMMSS.log` under the state directory's log folder.
//! The file is what an operator reads after a bad night, so two properties
//! matter more than speed:
//!
//! - **Only complete lines.** Each entry is formatted into one buffer and
//!   written with a single `write_all` on a file opened in append mode, with no
//!   user-space buffering in between. Concurrent writers (stdout and stderr
//!   pumps of several commands) therefore never interleave inside a line, and a
//!   crash leaves at most the very last line short.
//! - **Logging never fails a deployment.** A full disk must not turn a healthy
//!   rollout into a rollback, so write errors are reported once as a tracing
//!   warning and otherwise ignored.
//!
//! Writes are small and synchronous (a `std` mutex around an unbuffered
//! `File`): an entry costs one `write(2)`, less than handing it to a blocking
//! thread would.
//!
//! The handle is a cheap `Arc` clone so that detached output pumps (see
//! [`super::command`]) can keep writing after the command that started them
//! has returned.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Local, SecondsFormat, Utc};

/// How many `_N` suffixes [`DeploymentLog::create`] tries before giving up.
const MAX_SUFFIX: u32 = 1000;

/// A deployment's log file. Cloning shares the file.
#[derive(Debug, Clone)]
pub struct DeploymentLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    file: Mutex<File>,
    /// Set after the first failed write, so a broken disk warns once.
    warned: AtomicBool,
    /// Secrets replaced in every line.
    redactor: Option<Arc<crate::config::secret::Redactor>>,
}

impl DeploymentLog {
    /// Creates `<dir>/deploy_YYYYMMDD_HHMMSS.log` for a deployment that
    /// started at `started` (creating `dir` if needed). When that name is
    /// taken (two deployments in the same second), `_2`, `_3`, … are appended
    /// before `.log`; an existing file is never reused or truncated.
    pub fn create(dir: &Path, started: DateTime<Local>) -> io::Result<DeploymentLog> {
        crate::fs::private_dir(dir)?;
        let stem = format!("deploy_{}", started.format("%Y%m%d_%H%M%S"));
        for n in 1..=MAX_SUFFIX {
            let name = if n == 1 {
                format!("{stem}.log")
            } else {
                format!("{stem}_{n}.log")
            };
            let path = dir.join(name);
            // 0600: the log holds every command's output.
            match crate::fs::private_options()
                .append(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    return Ok(DeploymentLog {
                        inner: Arc::new(Inner {
                            path,
                            file: Mutex::new(file),
                            warned: AtomicBool::new(false),
                            redactor: None,
                        }),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{}: {stem}.log and {MAX_SUFFIX} numbered variants already exist",
                dir.display()
            ),
        ))
    }

    /// Every line written from now on has `redactor`'s secrets replaced.
    /// Call it before cloning the log (a clone shares the file and keeps the
    /// setting it had).
    pub fn with_redactor(mut self, redactor: Arc<crate::config::secret::Redactor>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.redactor = Some(redactor);
        }
        self
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Appends `<RFC 3339 UTC timestamp, ms> [<source>] <text>`.
    ///
    /// A multi-line `text` becomes one log line per line, each with the
    /// timestamp and source (still written with one `write_all`). Carriage
    /// returns are dropped. Errors are reported once through `tracing` and
    /// otherwise ignored.
    pub fn line(&self, source: &str, text: &str) {
        let redacted;
        let text = match &self.inner.redactor {
            Some(r) if !r.is_empty() => {
                redacted = r.redact(text);
                redacted.as_str()
            }
            _ => text,
        };
        let stamp = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        // A source is a label, not text: one line, control characters escaped.
        let source = crate::config::one_line(source);
        let mut buf = String::with_capacity(stamp.len() + source.len() + text.len() + 8);
        let mut lines = text.split('\n').peekable();
        // `"a\n".split('\n')` yields a trailing empty piece: skip it, but keep
        // an entirely empty text as one (empty) entry.
        while let Some(piece) = lines.next() {
            if piece.is_empty() && lines.peek().is_none() && !buf.is_empty() {
                break;
            }
            buf.push_str(&stamp);
            buf.push_str(" [");
            buf.push_str(&source);
            buf.push_str("] ");
            buf.extend(piece.chars().filter(|&c| c != '\r'));
            buf.push('\n');
        }
        let result = {
            let mut file = self
                .inner
                .file
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            file.write_all(buf.as_bytes()).and_then(|()| file.flush())
        };
        if let Err(e) = result
            && !self.inner.warned.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                "cannot write the deployment log {}: {e} (further errors are not reported)",
                self.inner.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn started() -> DateTime<Local> {
        match Local.with_ymd_and_hms(2024, 1, 2, 3, 4, 5) {
            chrono::LocalResult::Single(t) => t,
            other => panic!("ambiguous test time: {other:?}"),
        }
    }

    #[test]
    fn file_name_has_the_start_time_and_never_reuses_a_file() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("deployment_logs/nested");
        let a = DeploymentLog::create(&dir, started())?;
        let b = DeploymentLog::create(&dir, started())?;
        let c = DeploymentLog::create(&dir, started())?;
        let name = |l: &DeploymentLog| {
            l.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        };
        assert_eq!(name(&a).as_deref(), Some("deploy_20240102_030405.log"));
        assert_eq!(name(&b).as_deref(), Some("deploy_20240102_030405_2.log"));
        assert_eq!(name(&c).as_deref(), Some("deploy_20240102_030405_3.log"));
        a.line("engine", "first");
        b.line("engine", "second");
        assert!(std::fs::read_to_string(a.path())?.ends_with(" [engine] first\n"));
        assert!(std::fs::read_to_string(b.path())?.ends_with(" [engine] second\n"));
        Ok(())
    }

    /// `2024-01-02T03:04:05.678Z [source] text`
    fn is_complete_line(line: &str) -> bool {
        let Some((stamp, rest)) = line.split_once(' ') else {
            return false;
        };
        stamp.len() == 24
            && stamp.ends_with('Z')
            && DateTime::parse_from_rfc3339(stamp).is_ok()
            && rest.starts_with('[')
            && rest.contains("] ")
    }

    #[test]
    fn concurrent_writers_only_produce_complete_lines() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let log = DeploymentLog::create(tmp.path(), Local::now())?;
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        log.line(
                            &format!("writer {t}"),
                            &format!("line {i} {}", "x".repeat(300)),
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        log.line("multi", "one\r\ntwo\n");
        log.line("empty", "");
        let text = std::fs::read_to_string(log.path())?;
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8 * 200 + 3);
        for line in &lines {
            assert!(is_complete_line(line), "incomplete line: {line:?}");
        }
        assert!(lines[1600].ends_with(" [multi] one"));
        assert!(lines[1601].ends_with(" [multi] two"));
        assert!(lines[1602].ends_with(" [empty] "));
        Ok(())
    }
}
