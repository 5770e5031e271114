//! A real PostgreSQL server for the history tests: `initdb` in a temporary
//! directory, `pg_ctl start` on a loopback port chosen at run time, with the
//! socket in the same directory. As root (CI), the server runs as the
//! `postgres` user (`runuser`), which owns the directory.
//!
//! One server is shared by the whole test binary ([`shared`]), each test
//! getting a database of its own; a test that stops and restarts the
//! server starts its own ([`PgServer::start`]). Either way the server is
//! stopped at the end: an owned one by its `Drop` (which also runs when the
//! test panics), the shared one by a watchdog process that waits for this
//! test process to exit (its stdin is a pipe that closes when the process
//! goes, however it goes) and then stops the server and removes its
//! directory.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

/// The superuser's name; local and loopback connections as it are trusted.
pub(crate) const SUPERUSER: &str = "postgres";
/// A role that must log in with a password (scram-sha-256).
pub(crate) const PW_USER: &str = "adeploy_pw";
pub(crate) const PW_PASSWORD: &str = "s3cret-pw-for-tests";

#[derive(Debug)]
pub(crate) struct PgServer {
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    pub(crate) port: u16,
    as_postgres: bool,
    databases: AtomicU32,
}

/// The server shared by the tests of this binary.
pub(crate) fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    static WATCHDOG: Mutex<Option<(Child, ChildStdin)>> = Mutex::new(None);
    SERVER.get_or_init(|| {
        let server = PgServer::start();
        // Stop it when this process exits, whatever way it exits.
        let script = format!(
            "cat >/dev/null; {}; rm -rf '{}'",
            server.shell_command(&[
                "pg_ctl",
                "-D",
                &server.data.display().to_string(),
                "-m",
                "immediate",
                "stop"
            ]),
            server.dir.path().display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the watchdog of the test PostgreSQL server");
        let stdin = child.stdin.take().expect("the watchdog's stdin");
        *WATCHDOG.lock().unwrap() = Some((child, stdin));
        server
    })
}

impl PgServer {
    /// Starts a server of its own (stopped when dropped).
    pub(crate) fn start() -> PgServer {
        let bin = pg_bin();
        let dir = tempfile::Builder::new()
            .prefix("adeploy-pg-")
            .tempdir()
            .expect("a temporary directory for PostgreSQL");
        let as_postgres = running_as_root();
        if as_postgres {
            chown_to_postgres(dir.path());
        }
        let data = dir.path().join("data");
        let mut server = PgServer {
            data,
            bin,
            port: 0,
            as_postgres,
            databases: AtomicU32::new(0),
            dir,
        };
        let pwfile = server.dir.path().join("pwfile");
        std::fs::write(&pwfile, "unused-superuser-password\n").unwrap();
        if as_postgres {
            chown_to_postgres(&pwfile);
        }
        server.run(&[
            "initdb",
            "-D",
            &server.data.display().to_string(),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        std::fs::write(
            server.data.join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {PW_USER} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
        )
        .unwrap();
        let mut last_error = String::new();
        for _ in 0..5 {
            server.port = free_port();
            match server.try_start() {
                Ok(()) => {
                    server.admin_sql(&format!(
                        "CREATE ROLE {PW_USER} LOGIN SUPERUSER PASSWORD '{PW_PASSWORD}'"
                    ));
                    return server;
                }
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start the test PostgreSQL server: {last_error}");
    }

    fn try_start(&self) -> Result<(), String> {
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300",
            self.port,
            self.dir.path().display()
        );
        let out = self.command(&[
            "pg_ctl",
            "-D",
            &self.data.display().to_string(),
            "-o",
            &options,
            "-l",
            &log.display().to_string(),
            "-w",
            "-t",
            "60",
            "start",
        ]);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Stops the server (fast shutdown: sessions are terminated).
    pub(crate) fn stop(&self) {
        self.run(&[
            "pg_ctl",
            "-D",
            &self.data.display().to_string(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    /// Starts it again on the same port.
    pub(crate) fn restart(&self) {
        if let Err(e) = self.try_start() {
            panic!("cannot restart the test PostgreSQL server: {e}");
        }
    }

    /// A new, empty database; its URL (as the trusted superuser).
    pub(crate) fn create_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("adeploy_test_{}_{n}", std::process::id());
        self.admin_sql(&format!("CREATE DATABASE {name}"));
        self.url(SUPERUSER, None, &name)
    }

    /// `postgres://user[:password]@127.0.0.1:port/database`.
    pub(crate) fn url(&self, user: &str, password: Option<&str>, database: &str) -> String {
        match password {
            Some(pw) => format!(
                "postgres://{user}:{pw}@127.0.0.1:{}/{database}?sslmode=disable",
                self.port
            ),
            None => format!(
                "postgres://{user}@127.0.0.1:{}/{database}?sslmode=disable",
                self.port
            ),
        }
    }

    /// Runs SQL as the superuser through `psql` on the socket.
    pub(crate) fn admin_sql(&self, sql: &str) {
        let out = self.command(&[
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            &self.dir.path().display().to_string(),
            "-p",
            &self.port.to_string(),
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
            "-c",
            sql,
        ]);
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn run(&self, args: &[&str]) {
        let out = self.command(args);
        assert!(
            out.status.success(),
            "{}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn command(&self, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(args[0]);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(&args[1..])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
    }

    fn shell_command(&self, args: &[&str]) -> String {
        let program = self.bin.join(args[0]).display().to_string();
        let quoted: Vec<String> = std::iter::once(program)
            .chain(args[1..].iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', "'\\''")))
            .collect();
        if self.as_postgres {
            format!("runuser -u postgres -- {}", quoted.join(" "))
        } else {
            quoted.join(" ")
        }
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        let out = self.command(&[
            "pg_ctl",
            "-D",
            &self.data.display().to_string(),
            "-m",
            "immediate",
            "stop",
        ]);
        if !out.status.success() {
            // Already stopped (a test stopped it), or never started.
            let _ = std::io::stderr().write_all(&out.stderr);
        }
    }
}

/// The directory of PostgreSQL's binaries: `ADEPLOY_TEST_PG_BIN`, else
/// Debian's `/usr/lib/postgresql/15/bin` (or the newest version there).
fn pg_bin() -> PathBuf {
    if let Some(dir) = std::env::var_os("ADEPLOY_TEST_PG_BIN") {
        return PathBuf::from(dir);
    }
    let preferred = Path::new("/usr/lib/postgresql/15/bin");
    if preferred.join("initdb").exists() {
        return preferred.to_path_buf();
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "PostgreSQL is not installed: these tests need a real server \
             (apt-get install postgresql-15, as .ci/run does, or set ADEPLOY_TEST_PG_BIN)"
        )
    })
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|rest| rest.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn chown_to_postgres(path: &Path) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let (uid, gid) = passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.first() == Some(&"postgres")).then(|| (f[2].parse().unwrap(), f[3].parse().unwrap()))
        })
        .expect("a postgres user (the postgresql-15 package creates it)");
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
