//! Grant checks: pure functions deciding whether a host import may proceed.
//! Kept apart from the import implementations so every rule is unit-tested
//! without a component.

use std::path::{Component, Path, PathBuf};

use crate::config::Grants;

/// Whether `name` is granted by `grants.env` (exact, or prefix ending in `*`).
pub fn env_allowed(grants: &Grants, name: &str) -> bool {
    !name.is_empty()
        && grants.env.iter().any(|g| match g.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => g == name,
        })
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.ends_with(&format!(".{suffix}")),
        None => pattern == host,
    }
}

/// Splits `host:port` (or `[v6]:port`); a pattern without a port means any port.
fn split_pattern(pattern: &str) -> (&str, &str) {
    if let Some(rest) = pattern.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, port);
    }
    match pattern.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port),
        _ => (pattern, "*"),
    }
}

/// Whether `host:port` is granted by `grants.network`.
pub fn endpoint_allowed(grants: &Grants, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    grants.network.iter().any(|g| {
        let (h, p) = split_pattern(g);
        host_matches(h, host) && (p == "*" || p.parse::<u16>().is_ok_and(|p| p == port))
    })
}

/// Whether resolving `name` is granted: some network pattern's host matches it.
pub fn name_allowed(grants: &Grants, name: &str) -> bool {
    grants
        .network
        .iter()
        .any(|g| host_matches(split_pattern(g).0, name))
}

/// Why a path was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum PathDenial {
    /// Not absolute, or empty.
    Invalid(String),
    /// Outside every granted prefix (lexically, or after following links).
    Denied(String),
}

/// Checks `requested` (an absolute path as the plugin sees it) against
/// `grants.paths` and maps it under `root`. `..` components are refused
/// outright; symbolic links are followed and the result must still lie under
/// a granted prefix (also resolved under `root`). Returns the real path to use,
/// or `Ok(None)` when it does not exist.
pub fn resolve_path(
    grants: &Grants,
    root: &Path,
    requested: &str,
) -> Result<Option<PathBuf>, PathDenial> {
    let path = Path::new(requested);
    if requested.is_empty() || !path.is_absolute() {
        return Err(PathDenial::Invalid(format!(
            "path {requested:?} is not absolute"
        )));
    }
    if path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(PathDenial::Denied(format!(
            "path {requested:?} contains `..`"
        )));
    }
    let prefixes: Vec<&Path> = grants
        .paths
        .iter()
        .map(Path::new)
        .filter(|p| p.is_absolute() && !p.components().any(|c| matches!(c, Component::ParentDir)))
        .filter(|p| path.starts_with(p))
        .collect();
    if prefixes.is_empty() {
        return Err(PathDenial::Denied(format!(
            "path {requested:?} is not under grants.paths"
        )));
    }
    let real = under_root(root, path);
    let canonical = match real.canonicalize() {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link inside the prefix is also "not there".
            return Ok(None);
        }
        Err(_) => return Ok(None),
    };
    let inside = prefixes.iter().any(|p| {
        under_root(root, p)
            .canonicalize()
            .map(|cp| canonical.starts_with(cp))
            .unwrap_or(false)
    });
    if inside {
        Ok(Some(canonical))
    } else {
        Err(PathDenial::Denied(format!(
            "path {requested:?} leads outside grants.paths through a symbolic link"
        )))
    }
}

fn under_root(root: &Path, path: &Path) -> PathBuf {
    let relative: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    root.join(relative)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants() -> Grants {
        Grants {
            env: vec!["DEPLOYMENT_ENVIRONMENT".into(), "APP_*".into()],
            paths: vec!["/granted".into()],
            network: vec![
                "127.0.0.1:8080".into(),
                "*.example.com:443".into(),
                "localhost".into(),
            ],
            hostname: false,
            processes: false,
        }
    }

    #[test]
    fn env_names_exact_or_prefix() {
        let g = grants();
        assert!(env_allowed(&g, "DEPLOYMENT_ENVIRONMENT"));
        assert!(env_allowed(&g, "APP_MODE"));
        assert!(!env_allowed(&g, "HOME"));
        assert!(!env_allowed(&g, "DEPLOYMENT_ENVIRONMENT_X"));
        assert!(!env_allowed(&g, ""));
    }

    #[test]
    fn endpoints_match_host_and_port() {
        let g = grants();
        assert!(endpoint_allowed(&g, "127.0.0.1", 8080));
        assert!(!endpoint_allowed(&g, "127.0.0.1", 8081));
        assert!(endpoint_allowed(&g, "api.example.com", 443));
        assert!(
            !endpoint_allowed(&g, "example.com", 443),
            "*.x matches subdomains only"
        );
        assert!(!endpoint_allowed(&g, "evil-example.com", 443));
        assert!(
            endpoint_allowed(&g, "LOCALHOST", 9999),
            "no port in the pattern means any port"
        );
        assert!(name_allowed(&g, "api.example.com"));
        assert!(!name_allowed(&g, "example.org"));
    }

    #[test]
    fn paths_under_prefix_only() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("granted/sub")).unwrap();
        std::fs::write(root.path().join("granted/sub/f"), "x").unwrap();
        std::fs::write(root.path().join("secret"), "s").unwrap();
        let g = grants();
        assert!(
            resolve_path(&g, root.path(), "/granted/sub/f")
                .unwrap()
                .is_some()
        );
        assert_eq!(
            resolve_path(&g, root.path(), "/granted/missing").unwrap(),
            None
        );
        assert!(matches!(
            resolve_path(&g, root.path(), "/secret"),
            Err(PathDenial::Denied(_))
        ));
        assert!(matches!(
            resolve_path(&g, root.path(), "/granted/../secret"),
            Err(PathDenial::Denied(m)) if m.contains("..")
        ));
        assert!(matches!(
            resolve_path(&g, root.path(), "granted/f"),
            Err(PathDenial::Invalid(_))
        ));
        assert!(
            matches!(
                resolve_path(&g, root.path(), "/grantedX"),
                Err(PathDenial::Denied(_))
            ),
            "a prefix is a path prefix, not a string prefix"
        );
    }

    #[test]
    fn symlink_out_of_the_prefix_is_denied() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("granted")).unwrap();
        std::fs::write(root.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), root.path().join("granted/link"))
            .unwrap();
        let err = resolve_path(&grants(), root.path(), "/granted/link").unwrap_err();
        assert!(matches!(err, PathDenial::Denied(m) if m.contains("symbolic link")));
    }
}
