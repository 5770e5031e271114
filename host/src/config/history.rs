//! The `history:` section: where the deployment history lives and how much of
//! it is kept.
//!
//! Why the URL is its own type: it may carry a password
//! (`postgres://user:pw@host/db`). [`HistoryUrl`] prints, serialises and
//! reports errors only in its redacted form ([`redact_url`]), so neither a
//! config dump nor an error message can leak it; the history backend is the
//! one place that calls [`HistoryUrl::expose`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ConfigError;
use super::secret::REDACTED;

/// Environment variable that names the history URL; it wins over `history.url`.
pub const HISTORY_URL_ENV: &str = "ADEPLOY_HISTORY_URL";

/// `history`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// `postgres://user@host:5432/adeploy`: a PostgreSQL history shared by
    /// every runner. Unset: the embedded redb database in the state
    /// directory. `ADEPLOY_HISTORY_URL` wins.
    pub url: Option<HistoryUrl>,
    /// Where the password comes from when the URL has none:
    /// `{from_env: VAR}`. Without it, `PGPASSWORD`, then `~/.pgpass`
    /// (or `PGPASSFILE`).
    pub password: Option<PasswordSource>,
    /// Metric samples of deployments older than this are downsampled to
    /// `downsampled_samples` per deployment: `30d`, `12h`, `90m`, `3600s`, `2w`.
    pub retention: String,
    /// How many samples a deployment keeps once past `retention` (at least 1).
    pub downsampled_samples: u32,
    /// How many recent deployments the start of a deployment reads in full;
    /// the rest of the history reaches it as maintained aggregates.
    pub window: u32,
}

/// `history.password`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSource {
    /// adeploy's own environment variable that holds the password.
    pub from_env: String,
}

impl HistoryConfig {
    /// The URL in effect: `ADEPLOY_HISTORY_URL` (when set and not empty),
    /// else `history.url`.
    pub fn effective_url(&self) -> Option<HistoryUrl> {
        self.effective_url_with(|name| std::env::var(name).ok())
    }

    /// [`HistoryConfig::effective_url`] with `lookup` for environment variables.
    pub fn effective_url_with(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Option<HistoryUrl> {
        match lookup(HISTORY_URL_ENV) {
            Some(url) if !url.trim().is_empty() => Some(HistoryUrl::new(url.trim())),
            _ => self.url.clone(),
        }
    }

    /// `retention` as a duration (validated at load, so a bad value here
    /// means the config was built by hand: 30 days then).
    pub fn retention(&self) -> Duration {
        parse_duration(&self.retention).unwrap_or(Duration::from_secs(30 * 24 * 3600))
    }

    pub(super) fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let semantic = |key: &str, message: String| ConfigError::Semantic {
            path: path.to_path_buf(),
            key: format!("history.{key}"),
            message,
        };
        if let Some(url) = &self.url {
            check_url(url.expose()).map_err(|m| semantic("url", m))?;
        }
        if let Some(p) = &self.password
            && p.from_env.trim().is_empty()
        {
            return Err(semantic(
                "password.from_env",
                "must name an environment variable".to_string(),
            ));
        }
        if parse_duration(&self.retention).is_none() {
            return Err(semantic(
                "retention",
                format!(
                    "{:?} is not a duration; write a number and a unit: 30d, 12h, 90m, 3600s or 2w",
                    self.retention
                ),
            ));
        }
        if self.downsampled_samples == 0 {
            return Err(semantic(
                "downsampled_samples",
                "must be at least 1".to_string(),
            ));
        }
        if self.window == 0 {
            return Err(semantic("window", "must be at least 1".to_string()));
        }
        Ok(())
    }
}

/// Checks that `url` is a PostgreSQL URL adeploy can use; the message never
/// contains the password.
pub fn check_url(url: &str) -> Result<(), String> {
    let redacted = redact_url(url);
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(format!(
            "{redacted:?} is not a PostgreSQL URL; write postgres://USER@HOST:PORT/DATABASE"
        ));
    }
    url.parse::<tokio_postgres::Config>()
        .map(|_| ())
        .map_err(|e| {
            format!(
                "{redacted:?} is not a valid PostgreSQL URL ({}); write postgres://USER@HOST:PORT/DATABASE",
                redact_url(&e.to_string())
            )
        })
}

/// A history URL: prints and serialises redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryUrl(String);

impl HistoryUrl {
    pub fn new(url: impl Into<String>) -> Self {
        HistoryUrl(url.into())
    }

    /// The URL with its password, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        redact_url(&self.0)
    }
}

impl fmt::Debug for HistoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for HistoryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Serialize for HistoryUrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.redacted())
    }
}

impl<'de> Deserialize<'de> for HistoryUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(HistoryUrl)
    }
}

/// `url` with the password of its user-info part (`user:PASSWORD@`) and any
/// `password=` parameter replaced by `[redacted]`. Text that is not a URL is
/// still scanned for `password=`.
pub fn redact_url(url: &str) -> String {
    let mut out = match url.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &url[rest_start..];
            // The authority ends at the first '/', '?' or '#'; its user info
            // at the last '@' inside it (a password may contain '@').
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    let user = match userinfo.find(':') {
                        Some(colon) => format!("{}:{REDACTED}", &userinfo[..colon]),
                        None => userinfo.to_string(),
                    };
                    format!("{}{user}{}", &url[..rest_start], &url[rest_start + at..])
                }
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    // `password=...` up to the next separator, in a query or a key=value string.
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let start = from + i + "password=".len();
        let end = out[start..]
            .find(['&', ' ', '#'])
            .map_or(out.len(), |e| start + e);
        out.replace_range(start..end, REDACTED);
        from = start + REDACTED.len();
    }
    out
}

/// `30d`, `12h`, `90m`, `3600s`, `2w` (a whole number and one unit).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let number: u64 = text[..text.len() - unit.len_utf8()].trim().parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 24 * 3600,
        'w' => 7 * 24 * 3600,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        for (url, expected) in [
            (
                "postgres://ci:hunter2@db.example:5432/adeploy",
                "postgres://ci:[redacted]@db.example:5432/adeploy",
            ),
            (
                "postgresql://ci:p%40ss@w@db/adeploy?sslmode=require",
                "postgresql://ci:[redacted]@db/adeploy?sslmode=require",
            ),
            (
                "postgres://ci@db/adeploy?password=hunter2&sslmode=disable",
                "postgres://ci@db/adeploy?password=[redacted]&sslmode=disable",
            ),
            ("postgres://db/adeploy", "postgres://db/adeploy"),
            (
                "host=db user=ci password=hunter2 dbname=x",
                "host=db user=ci password=[redacted] dbname=x",
            ),
        ] {
            assert_eq!(redact_url(url), expected, "{url}");
            assert!(!redact_url(url).contains("hunter2"));
        }
        let url = HistoryUrl::new("postgres://ci:hunter2@db/adeploy");
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        assert!(!serde_json::to_string(&url).unwrap().contains("hunter2"));
        assert_eq!(url.expose(), "postgres://ci:hunter2@db/adeploy");
    }

    #[test]
    fn urls_are_checked_without_echoing_the_password() {
        assert!(check_url("postgres://ci@127.0.0.1:5432/adeploy").is_ok());
        let err = check_url("mysql://ci:hunter2@db/x").unwrap_err();
        assert!(err.contains("not a PostgreSQL URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = check_url("postgres://ci:hunter2@db:notaport/x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn the_environment_wins_over_the_config() {
        let cfg = HistoryConfig {
            url: Some(HistoryUrl::new("postgres://a@config/x")),
            ..HistoryConfig::default()
        };
        let env = |v: &str| (v == HISTORY_URL_ENV).then(|| "postgres://b@env/x".to_string());
        assert_eq!(
            cfg.effective_url_with(env).unwrap().expose(),
            "postgres://b@env/x"
        );
        let empty = |_: &str| Some(String::new());
        assert_eq!(
            cfg.effective_url_with(empty).unwrap().expose(),
            "postgres://a@config/x"
        );
        assert!(
            HistoryConfig::default()
                .effective_url_with(|_| None)
                .is_none()
        );
    }

    #[test]
    fn durations_take_one_unit() {
        assert_eq!(parse_duration("30d"), Some(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration(" 90m "), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(1_209_600)));
        for bad in ["", "d", "30", "3.5d", "-1d", "30 days", "1y"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
