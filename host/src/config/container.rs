//! `target: container` services: which keys they take, and checks of them
//! with positions (the keys are on `services.<name>`; see `schema.rs`).

use super::placeholders;
use super::{CommandSpec, ConfigError, ContainerMode, ServiceConfig, TargetKind};

/// The container keys a service sets, by name (to refuse them elsewhere).
fn container_keys(s: &ServiceConfig) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut add = |set: bool, key: &'static str| {
        if set {
            keys.push(key);
        }
    };
    add(s.image.is_some(), "image");
    add(s.runtime.is_some(), "runtime");
    add(!s.runtime_options.is_empty(), "runtime_options");
    add(!s.run_options.is_empty(), "run_options");
    add(!s.ports.is_empty(), "ports");
    add(!s.volumes.is_empty(), "volumes");
    add(!s.args.is_empty(), "args");
    add(s.strategy_mode != ContainerMode::Replace, "strategy_mode");
    add(!s.slot_ports.is_empty(), "slot_ports");
    add(s.switch.is_some(), "switch");
    add(s.stop_timeout_s.is_some(), "stop_timeout_s");
    keys
}

/// A tag as the runtimes accept it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
/// It is also part of the container's name (`adeploy-<service>-<version>`).
pub fn check_tag(v: &str) -> Result<(), String> {
    let ok = v.len() <= 128
        && v.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{:?} is not an image tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)",
            super::one_line(v)
        ))
    }
}

/// Checks the container keys of service `name`; `err` places a message at a
/// key path.
pub(super) fn validate(
    name: &str,
    s: &ServiceConfig,
    err: &dyn Fn(&[&str], String) -> ConfigError,
) -> Result<(), ConfigError> {
    if s.target != TargetKind::Container {
        if let Some(key) = container_keys(s).first() {
            return Err(err(
                &["services", name, key],
                "is a container setting: it needs `target: container`".to_string(),
            ));
        }
        return Ok(());
    }
    for key in ["deploy", "rollback"] {
        let set = if key == "deploy" {
            s.deploy.is_some()
        } else {
            s.rollback.is_some()
        };
        if set {
            return Err(err(
                &["services", name, key],
                format!(
                    "a `target: container` service is started and rolled back by adeploy from `image` and `version`: remove `{key}`"
                ),
            ));
        }
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(err(
            &["services", name],
            "a container service's name becomes part of container names: use letters, digits, `_`, `.`, `-`".to_string(),
        ));
    }
    let Some(image) = &s.image else {
        return Err(err(
            &["services", name],
            "`target: container` needs `image` (e.g. `image: localhost/web`, the tag is `version`)"
                .to_string(),
        ));
    };
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.trim().is_empty() || image.chars().any(char::is_whitespace) || image.starts_with('-') {
        return Err(err(
            &["services", name, "image"],
            format!("{:?} is not an image name", super::one_line(image)),
        ));
    }
    if last.contains(':') || image.contains('@') {
        return Err(err(
            &["services", name, "image"],
            format!(
                "{:?} carries a tag or digest: give the image without it and the tag as `version`",
                super::one_line(image)
            ),
        ));
    }
    if let Some(v) = &s.version {
        check_tag(v).map_err(|m| err(&["services", name, "version"], m))?;
    }
    for (key, list) in [
        ("runtime_options", &s.runtime_options),
        ("run_options", &s.run_options),
        ("ports", &s.ports),
        ("volumes", &s.volumes),
        ("args", &s.args),
    ] {
        for item in list {
            placeholders::used(item).map_err(|e| err(&["services", name, key], e.to_string()))?;
        }
    }
    for (k, v) in &s.env {
        if let super::secret::EnvValue::Plain(text) = v {
            placeholders::used(text)
                .map_err(|e| err(&["services", name, "env", k], e.to_string()))?;
        }
    }
    match s.strategy_mode {
        ContainerMode::Replace => {
            let health = s.health.as_ref();
            let texts = [
                ("args", s.args.iter().collect::<Vec<_>>()),
                ("ports", s.ports.iter().collect()),
                ("volumes", s.volumes.iter().collect()),
                ("run_options", s.run_options.iter().collect()),
                (
                    "health",
                    health.and_then(|h| h.http.as_ref()).into_iter().collect(),
                ),
                (
                    "health",
                    health.and_then(|h| h.tcp.as_ref()).into_iter().collect(),
                ),
            ];
            for (key, list) in texts {
                if list.iter().any(|t| t.contains("${ADEPLOY_PORT}")) {
                    return Err(err(
                        &["services", name, key],
                        "uses ${ADEPLOY_PORT}, a blue-green slot's port: it has no value with `strategy_mode: replace`".to_string(),
                    ));
                }
            }
            if !s.slot_ports.is_empty() {
                return Err(err(
                    &["services", name, "slot_ports"],
                    "is for `strategy_mode: blue-green`".to_string(),
                ));
            }
            if s.switch.is_some() {
                return Err(err(
                    &["services", name, "switch"],
                    "is for `strategy_mode: blue-green`".to_string(),
                ));
            }
        }
        ContainerMode::BlueGreen => {
            if s.slot_ports.len() != 2
                || s.slot_ports[0] == s.slot_ports[1]
                || s.slot_ports.contains(&0)
            {
                return Err(err(
                    &["services", name, if s.slot_ports.is_empty() { "strategy_mode" } else { "slot_ports" }],
                    "blue-green needs `slot_ports: [BLUE, GREEN]`, two different ports (1-65535) the old and new container take turns on".to_string(),
                ));
            }
            match &s.switch {
                None => {
                    return Err(err(
                        &["services", name, "strategy_mode"],
                        "blue-green needs `switch`: the command that sends traffic to the new container ($ADEPLOY_PORT)".to_string(),
                    ));
                }
                Some(CommandSpec::Argv(v)) if v.first().is_none_or(|p| p.is_empty()) => {
                    return Err(err(
                        &["services", name, "switch"],
                        "an argv list needs a program".to_string(),
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    /// `(line, column)` of the first `needle` in `text`, 1-based.
    fn position(text: &str, needle: &str) -> (usize, usize) {
        text.lines()
            .enumerate()
            .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
            .unwrap()
    }

    fn web(extra: &str) -> String {
        format!(
            "services:\n  web:\n    target: container\n    image: localhost/web\n    version: \"1\"\n{extra}"
        )
    }

    #[test]
    fn container_keys_are_checked_with_positions() {
        let cases = [
            (
                web("    runtime: rkt\n"),
                "rkt",
                "unknown variant `rkt`, expected `podman` or `docker`",
            ),
            (
                web("    deploy: 'true'\n"),
                "deploy",
                "services.web.deploy: a `target: container` service is started and rolled back by adeploy from `image` and `version`: remove `deploy`",
            ),
            (
                "services:\n  web:\n    target: container\n    image: localhost/web:1\n"
                    .to_string(),
                "image",
                "services.web.image: \"localhost/web:1\" carries a tag or digest: give the image without it and the tag as `version`",
            ),
            (
                web(
                    "    strategy_mode: blue-green\n    slot_ports: [8080, 8080]\n    switch: 'true'\n",
                ),
                "slot_ports",
                "services.web.slot_ports: blue-green needs `slot_ports: [BLUE, GREEN]`, two different ports (1-65535) the old and new container take turns on",
            ),
            (
                web("    strategy_mode: blue-green\n    slot_ports: [8080, 8081]\n"),
                "strategy_mode",
                "services.web.strategy_mode: blue-green needs `switch`: the command that sends traffic to the new container ($ADEPLOY_PORT)",
            ),
            (
                web("    args: [\"-p\", \"${ADEPLOY_PORT}\"]\n"),
                "args",
                "services.web.args: uses ${ADEPLOY_PORT}, a blue-green slot's port: it has no value with `strategy_mode: replace`",
            ),
            (
                web("    switch: 'true'\n"),
                "switch",
                "services.web.switch: is for `strategy_mode: blue-green`",
            ),
            (
                web("    args: [\"-p\", \"${ADEPLOY_PROT}\"]\n"),
                "args",
                "services.web.args: unknown placeholder ${ADEPLOY_PROT}",
            ),
            (
                "services:\n  web:\n    deploy: 'true'\n    ports: [\"8080:80\"]\n".to_string(),
                "ports",
                "services.web.ports: is a container setting: it needs `target: container`",
            ),
            (
                web("    version: \"-1\"\n").replace("    version: \"1\"\n", ""),
                "version",
                "services.web.version: \"-1\" is not an image tag",
            ),
        ];
        for (text, at, message) in cases {
            let err = Config::from_layers(&text, Path::new("c.yaml"))
                .unwrap_err()
                .to_string();
            let (line, column) = position(&text, at);
            let want = format!("c.yaml:{line}:");
            assert!(err.starts_with(&want), "{err} (want {want}) for\n{text}");
            assert!(err.contains(message), "{err}\nwants: {message}");
            if at != "rkt" {
                assert!(
                    err.starts_with(&format!("c.yaml:{line}:{column}:")),
                    "{err}"
                );
            }
        }
        let ok = web(
            "    runtime: podman\n    strategy_mode: blue-green\n    slot_ports: [8080, 8081]\n    switch: 'echo $ADEPLOY_PORT'\n    args: [\"httpd\", \"-p\", \"${ADEPLOY_PORT}\"]\n    health: {http: \"http://127.0.0.1:${ADEPLOY_PORT}/health\"}\n",
        );
        let cfg = Config::from_layers(&ok, Path::new("c.yaml")).unwrap();
        assert!(cfg.hosts_of("web").is_empty());
        assert!(!cfg.services["web"].is_fleet());
    }
}
