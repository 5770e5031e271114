//! From a history URL to connections: the password, TLS, the pool, and the
//! sorting of failures into "unreachable" and everything else.
//!
//! The password comes, in this order, from the URL, from
//! `history.password: {from_env: VAR}`, from `PGPASSWORD`, or from the
//! password file (`PGPASSFILE`, else `~/.pgpass`, in libpq's format and,
//! as libpq does, ignored when others can read it). It is never printed:
//! every message names the URL through [`redact_url`].
//!
//! TLS: with `sslmode=prefer` (the default) or `require`, the server's
//! certificate is verified against the Mozilla root set (webpki-roots); a
//! server without TLS is used in plain text under `prefer`, refused under
//! `require`. `sslmode=disable` never tries TLS (a CI service container).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::Host;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{HistoryUrl, PasswordSource, redact_url};
use crate::history::HistoryError;

/// How long establishing one connection may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections kept by one process: the deployment's writes, a report read
/// and the sampler's writes at once; locks use sessions of their own.
const POOL_SIZE: usize = 4;

/// Everything needed to open sessions to one history database.
#[derive(Clone)]
pub(crate) struct Connector {
    /// The URL, password redacted: the name of the history in every message.
    pub(crate) url: String,
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector").field("url", &self.url).finish()
    }
}

impl Connector {
    /// Parses `url` and resolves its password (`env` reads environment
    /// variables; `home` is where `.pgpass` is looked for).
    pub(crate) fn new(
        url: &HistoryUrl,
        password: Option<&PasswordSource>,
        env: &(dyn Fn(&str) -> Option<String> + Sync),
    ) -> Result<Connector, HistoryError> {
        let redacted = url.redacted();
        crate::config::check_url(url.expose()).map_err(|reason| HistoryError::Settings {
            url: redacted.clone(),
            reason,
        })?;
        let mut config: tokio_postgres::Config =
            url.expose()
                .parse()
                .map_err(|e: tokio_postgres::Error| HistoryError::Settings {
                    url: redacted.clone(),
                    reason: redact_url(&e.to_string()),
                })?;
        resolve_password(&mut config, password, env, &redacted)?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(15))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3);
        if config.get_application_name().is_none() {
            config.application_name("adeploy");
        }
        Ok(Connector {
            url: redacted,
            config,
            tls: tls()?,
        })
    }

    /// A pool of connections for the history's reads and writes.
    pub(crate) fn pool(&self) -> Result<Pool, HistoryError> {
        let manager = Manager::from_config(
            self.config.clone(),
            self.tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(CONNECT_TIMEOUT))
            .wait_timeout(Some(Duration::from_secs(30)))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| HistoryError::Settings {
                url: self.url.clone(),
                reason: format!("cannot build the connection pool: {e}"),
            })
    }

    /// A session of its own (a lock lives as long as its session), with
    /// server-side keepalives so that the server notices a vanished runner
    /// within about half a minute and releases its locks.
    pub(crate) async fn session(
        &self,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), HistoryError> {
        let (client, connection) = self
            .config
            .connect(self.tls.clone())
            .await
            .map_err(|e| self.unreachable(e))?;
        let url = self.url.clone();
        let task = tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(url = %url, %err, "history lock session ended");
            }
        });
        client
            .batch_execute(
                "SET application_name = 'adeploy lock';
                 SET tcp_keepalives_idle = 10;
                 SET tcp_keepalives_interval = 5;
                 SET tcp_keepalives_count = 3;",
            )
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok((client, task))
    }

    pub(crate) fn unreachable(&self, err: impl std::fmt::Display) -> HistoryError {
        HistoryError::Unreachable {
            url: self.url.clone(),
            source: redact_url(&err.to_string()).into(),
        }
    }
}

/// TLS with the Mozilla roots and the ring provider (the one reqwest uses).
fn tls() -> Result<MakeRustlsConnect, HistoryError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| HistoryError::Settings {
        url: String::new(),
        reason: format!("cannot set up TLS: {e}"),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn resolve_password(
    config: &mut tokio_postgres::Config,
    source: Option<&PasswordSource>,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
    url: &str,
) -> Result<(), HistoryError> {
    if config.get_password().is_some() {
        return Ok(());
    }
    if let Some(source) = source {
        let password = env(&source.from_env).ok_or_else(|| HistoryError::Settings {
            url: url.to_string(),
            reason: format!(
                "history.password.from_env: {} is not set in adeploy's environment; export it or change the config",
                source.from_env
            ),
        })?;
        config.password(password);
        return Ok(());
    }
    if let Some(password) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(password);
        return Ok(());
    }
    let file = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")));
    if let Some(file) = file
        && let Some(password) = password_from_file(&file, config, env)
    {
        config.password(password);
    }
    Ok(())
}

/// The password for this connection in a libpq password file
/// (`host:port:database:user:password`, `*` matches anything, `\` escapes).
fn password_from_file(
    file: &Path,
    config: &tokio_postgres::Config,
    env: &(dyn Fn(&str) -> Option<String> + Sync),
) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(file = %file.display(), "ignoring the password file: others can read it (chmod 0600 it)");
            return None;
        }
    }
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) => name.clone(),
        #[cfg(unix)]
        Some(Host::Unix(_)) => "localhost".to_string(),
        None => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| env("USER"))?;
    let database = config
        .get_dbname()
        .map(str::to_string)
        .unwrap_or_else(|| user.clone());
    let wanted = [
        host.as_str(),
        port.as_str(),
        database.as_str(),
        user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_pgpass(line);
            if fields.len() != 5 {
                return None;
            }
            let matches = fields[..4]
                .iter()
                .zip(wanted)
                .all(|(field, value)| field == "*" || field == value);
            matches.then(|| fields[4].clone())
        })
}

fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(last) = fields.last_mut()
                {
                    last.push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    #[test]
    fn the_password_comes_from_the_url_then_from_env_then_pgpassword_then_pgpass() {
        let none = |_: &str| None;
        // In the URL: kept.
        let mut c = config("postgres://ci:inurl@db:5432/x");
        resolve_password(&mut c, None, &none, "u").unwrap();
        assert_eq!(c.get_password(), Some(b"inurl".as_slice()));

        // history.password.from_env wins over PGPASSWORD; unset is an error.
        let source = PasswordSource {
            from_env: "ADEPLOY_DB_PW".into(),
        };
        let env = |v: &str| match v {
            "ADEPLOY_DB_PW" => Some("fromenv".to_string()),
            "PGPASSWORD" => Some("pgpassword".to_string()),
            _ => None,
        };
        let mut c = config("postgres://ci@db/x");
        resolve_password(&mut c, Some(&source), &env, "u").unwrap();
        assert_eq!(c.get_password(), Some(b"fromenv".as_slice()));
        let err = resolve_password(&mut config("postgres://ci@db/x"), Some(&source), &none, "u")
            .unwrap_err();
        assert!(
            err.to_string().contains("ADEPLOY_DB_PW is not set"),
            "{err}"
        );
        let mut c = config("postgres://ci@db/x");
        resolve_password(&mut c, None, &env, "u").unwrap();
        assert_eq!(c.get_password(), Some(b"pgpassword".as_slice()));

        // The password file: first matching line, wildcards and escapes.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5432:*:*:nope\ndb:5432:x:ci:p\\:w\\\\d\n*:*:*:*:fallback\n",
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let path = file.display().to_string();
        let env = |v: &str| (v == "PGPASSFILE").then(|| path.clone());
        let mut c = config("postgres://ci@db/x");
        resolve_password(&mut c, None, &env, "u").unwrap();
        assert_eq!(c.get_password(), Some(b"p:w\\d".as_slice()));
        let mut c = config("postgres://someone@elsewhere:6000/y");
        resolve_password(&mut c, None, &env, "u").unwrap();
        assert_eq!(c.get_password(), Some(b"fallback".as_slice()));

        // Readable by others: ignored, as libpq does.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            let mut c = config("postgres://ci@db/x");
            resolve_password(&mut c, None, &env, "u").unwrap();
            assert_eq!(c.get_password(), None);
        }
    }
}
