//! Grant checks: pure functions deciding whether a host import may proceed.
//! Kept apart from the import implementations so every rule is unit-tested
//! without a component.

use std::path::{Component, Path};

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
    /// The lookup itself failed (a loop of links, no permission).
    Failed(String),
}

/// Checks `requested` (an absolute path as the plugin sees it) against
/// `grants.paths` and looks it up inside `root` (`rootfs.rs`: the kernel
/// resolves it, absolute links included, as if `root` were `/`). `..`
/// components are refused outright; where the path leads must still lie
/// under a granted prefix (itself resolved inside `root`), so a link out of
/// the prefix is refused. Returns what was found, or `Ok(None)` when it does
/// not exist.
pub(crate) fn resolve_path(
    grants: &Grants,
    root: &Path,
    requested: &str,
) -> Result<Option<super::rootfs::Found>, PathDenial> {
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
    let found = match super::rootfs::lookup(root, path) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(PathDenial::Failed(format!(
                "path {requested:?} cannot be looked up: {e}"
            )));
        }
    };
    let inside = prefixes.iter().any(|p| {
        matches!(super::rootfs::lookup(root, p), Ok(Some(granted)) if found.inside.starts_with(&granted.inside))
    });
    if inside {
        Ok(Some(found))
    } else {
        Err(PathDenial::Denied(format!(
            "path {requested:?} leads outside grants.paths through a symbolic link"
        )))
    }
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
        assert!(
            resolve_path(&g, root.path(), "/granted/missing")
                .unwrap()
                .is_none()
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
        // An absolute link inside the root means the root's /secret.
        std::os::unix::fs::symlink("/secret", root.path().join("granted/link")).unwrap();
        let err = resolve_path(&grants(), root.path(), "/granted/link").unwrap_err();
        assert!(matches!(err, PathDenial::Denied(m) if m.contains("symbolic link")));
    }

    #[test]
    fn a_granted_prefix_through_an_absolute_link_stays_in_the_root() {
        // /var/run -> /run inside the image; the grant names /var/run/s.
        let img = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(img.path().join("run/s")).unwrap();
        std::fs::create_dir_all(img.path().join("var")).unwrap();
        std::fs::write(img.path().join("run/s/token"), "image").unwrap();
        std::os::unix::fs::symlink("/run", img.path().join("var/run")).unwrap();
        let g = Grants {
            paths: vec!["/var/run/s".into()],
            ..Grants::default()
        };
        let found = resolve_path(&g, img.path(), "/var/run/s/token")
            .unwrap()
            .unwrap();
        assert_eq!(found.inside, Path::new("/run/s/token"));
        // The host's own /run/s does not exist or is not what is read: a
        // path that exists only on the host is not found.
        assert!(
            resolve_path(&g, img.path(), "/var/run/s/only-on-the-host")
                .unwrap()
                .is_none()
        );
    }
}

/// What `requested` (a manifest's grants) asks for that `given` (the
/// config's) does not cover. An env name, path or network pattern counts as
/// given when the config lists it exactly or a broader entry covers it (an
/// env prefix `X_*`, a path prefix, `*`/`*.domain` hosts with any port).
/// Nothing asked for is ever granted by this: it is for reporting only.
pub fn missing(requested: &Grants, given: &Grants) -> Grants {
    let env = requested
        .env
        .iter()
        .filter(|e| !given.env.contains(e) && (e.ends_with('*') || !env_allowed(given, e.as_str())))
        .cloned()
        .collect();
    let paths = requested
        .paths
        .iter()
        .filter(|p| {
            !given.paths.iter().any(|g| {
                let g = g.trim_end_matches('/');
                p.as_str() == g || p.starts_with(&format!("{g}/")) || g.is_empty()
            })
        })
        .cloned()
        .collect();
    let network = requested
        .network
        .iter()
        .filter(|n| {
            if given.network.contains(n) {
                return false;
            }
            let (host, port) = split_pattern(n);
            match port.parse::<u16>() {
                Ok(port) if !host.contains('*') => !endpoint_allowed(given, host, port),
                _ => given.network.iter().all(|g| {
                    let (gh, gp) = split_pattern(g);
                    !(gp == "*" && (gh == "*" || gh.eq_ignore_ascii_case(host)))
                }),
            }
        })
        .cloned()
        .collect();
    Grants {
        env,
        paths,
        network,
        hostname: requested.hostname && !given.hostname,
        processes: requested.processes && !given.processes,
    }
}

#[cfg(test)]
mod missing_tests {
    use super::*;

    fn g(env: &[&str], paths: &[&str], network: &[&str], hostname: bool) -> Grants {
        Grants {
            env: env.iter().map(|s| s.to_string()).collect(),
            paths: paths.iter().map(|s| s.to_string()).collect(),
            network: network.iter().map(|s| s.to_string()).collect(),
            hostname,
            processes: false,
        }
    }

    #[test]
    fn only_what_the_config_does_not_cover_is_missing() {
        let asked = g(
            &["HOME", "APP_ENV", "CI_*"],
            &["/etc/adeploy", "/srv/app/conf"],
            &["api.example.com:443", "db.internal:5432"],
            true,
        );
        let given = g(&["APP_*"], &["/srv/app"], &["*.example.com:443"], false);
        let m = missing(&asked, &given);
        assert_eq!(m.env, vec!["HOME", "CI_*"]);
        assert_eq!(m.paths, vec!["/etc/adeploy"]);
        assert_eq!(m.network, vec!["db.internal:5432"]);
        assert!(m.hostname);
        assert!(missing(&asked, &asked).is_empty());
        assert!(missing(&Grants::default(), &given).is_empty());
    }
}

/// One line naming what `g` grants, e.g. `env=A,B paths=/etc hostname`, or
/// `none`.
pub fn summary(g: &Grants) -> String {
    let mut parts = Vec::new();
    if !g.env.is_empty() {
        parts.push(format!("env={}", g.env.join(",")));
    }
    if !g.paths.is_empty() {
        parts.push(format!("paths={}", g.paths.join(",")));
    }
    if !g.network.is_empty() {
        parts.push(format!("network={}", g.network.join(",")));
    }
    if g.hostname {
        parts.push("hostname".to_string());
    }
    if g.processes {
        parts.push("processes".to_string());
    }
    if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" ")
    }
}
