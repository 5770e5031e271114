//! Container runtimes: the podman or docker commands adeploy runs to find,
//! pull, start, stop and remove the containers of a `target: container`
//! service, here or on a fleet host over ssh.
//!
//! Shape decisions:
//!
//! - **argv, never a shell.** Every runtime call is a [`CommandSpec::Argv`]
//!   (`podman [runtime_options] SUBCOMMAND ...`); over ssh it is quoted
//!   word by word into the remote script like any fleet command
//!   ([`super::ssh::remote_script`]).
//! - **What only podman or only docker says is not used.** Containers are
//!   found with `ps -a -q --no-trunc --filter` and read with `container
//!   inspect` (JSON), using the fields both print the same way (`Id`,
//!   `Name`, `Image`, `Config.Image`, `Config.Labels`, `State.Running`,
//!   `State.StartedAt`); images with `image inspect --format {{.Id}}`.
//! - **The digest is the image id** (`sha256:` + the hash of the image's
//!   configuration): content-addressed, present for images that never saw a
//!   registry (imported or built locally), and what `container inspect`
//!   reports as the running container's image, so "the same image serves
//!   again" is a comparison of two ids.
//! - **Actions are logged, queries are not.** `pull`, `run`, `stop`,
//!   `start`, `rm` and `rename` go through [`run_command`] (the deployment
//!   log, timeouts, cancellation); `ps` and `inspect` are read directly.
//! - **Labels say what adeploy owns.** A container adeploy started carries
//!   `adeploy.service`, `adeploy.deployment`, `adeploy.version` (and
//!   `adeploy.host`, `adeploy.slot`, `adeploy.port` where they apply). A
//!   container under adeploy's name without them was started by someone
//!   else: reported, never replaced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::process::Command;

use crate::config::{CommandSpec, ContainerRuntime, InventoryHost, SshSettings};

use super::ssh::SshTarget;
use super::{CommandOutcome, ExecError, RunOptions, run_command};

pub const LABEL_SERVICE: &str = "adeploy.service";
pub const LABEL_DEPLOYMENT: &str = "adeploy.deployment";
pub const LABEL_VERSION: &str = "adeploy.version";
pub const LABEL_HOST: &str = "adeploy.host";
pub const LABEL_SLOT: &str = "adeploy.slot";
pub const LABEL_PORT: &str = "adeploy.port";

/// How long a query (`ps`, `inspect`) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a container operation failed. Every message names the runtime, the
/// container or image, and the host when it is remote.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// No runtime to run: the configured one is not on `PATH` (or the
    /// host's), or neither podman nor docker is.
    #[error("{}", not_installed(*runtime, host.as_deref()))]
    NotInstalled {
        runtime: Option<ContainerRuntime>,
        host: Option<String>,
    },
    /// A container under the name adeploy is about to use, without adeploy's
    /// labels: someone started it by hand.
    #[error(
        "container {name}{} exists but was not started by adeploy (it has no {LABEL_SERVICE} label): adeploy does not replace it; remove it (`{runtime} rm -f {name}`) or rename it (`{runtime} rename {name} NEW`), then deploy again",
        on(host.as_deref())
    )]
    Foreign {
        name: String,
        runtime: String,
        host: Option<String>,
    },
    /// The image is not on the machine and pulling it failed.
    #[error(
        "image {image} is not present{} and pulling it from {registry} failed: {message}",
        on(host.as_deref())
    )]
    ImageUnavailable {
        image: String,
        registry: String,
        host: Option<String>,
        message: String,
    },
    /// A runtime command failed (`podman run adeploy-web-2 failed: ...`).
    #[error("{runtime} {what} failed{}: {message}", on(host.as_deref()))]
    Failed {
        runtime: String,
        what: String,
        host: Option<String>,
        message: String,
    },
    /// The runtime's output could not be read.
    #[error("{runtime} {what}{}: unreadable output: {message}", on(host.as_deref()))]
    Output {
        runtime: String,
        what: String,
        host: Option<String>,
        message: String,
    },
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl ContainerError {
    /// True where the operator has to fix the config or the machine before
    /// anything is tried (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ContainerError::NotInstalled { .. })
    }
}

fn on(host: Option<&str>) -> String {
    host.map(|h| format!(" on {h}")).unwrap_or_default()
}

fn not_installed(runtime: Option<ContainerRuntime>, host: Option<&str>) -> String {
    match runtime {
        Some(r) => format!(
            "container runtime {} is not installed{} (not on PATH): install it, or set the service's `runtime` to the one that is",
            r.program(),
            on(host)
        ),
        None => format!(
            "no container runtime{}: neither podman nor docker is on PATH; install one (e.g. `apt-get install podman`)",
            on(host)
        ),
    }
}

/// A fleet host the runtime runs on, owned (a step task carries it).
#[derive(Debug, Clone)]
pub struct RemoteHost {
    pub name: String,
    pub host: InventoryHost,
    pub settings: SshSettings,
    pub control_dir: Option<PathBuf>,
}

impl RemoteHost {
    pub fn target(&self) -> SshTarget<'_> {
        SshTarget {
            name: &self.name,
            host: &self.host,
            settings: &self.settings,
            control_dir: self.control_dir.as_deref(),
        }
    }
}

/// `program` is an executable file on `PATH`.
pub fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        std::fs::metadata(dir.join(program))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// The runtime of a local service: the configured one if it is installed,
/// else podman, else docker.
pub fn local_runtime(
    configured: Option<ContainerRuntime>,
) -> Result<ContainerRuntime, ContainerError> {
    let found = match configured {
        Some(r) => on_path(r.program()).then_some(r),
        None => [ContainerRuntime::Podman, ContainerRuntime::Docker]
            .into_iter()
            .find(|r| on_path(r.program())),
    };
    found.ok_or(ContainerError::NotInstalled {
        runtime: configured,
        host: None,
    })
}

/// The runtime a fleet host has: podman, else docker (asked over ssh).
pub async fn remote_runtime(remote: &RemoteHost) -> Result<ContainerRuntime, ContainerError> {
    let probe = CommandSpec::Shell(
        "for p in podman docker; do command -v $p >/dev/null 2>&1 && { echo $p; exit 0; }; done; exit 127"
            .to_string(),
    );
    let argv = match remote.target().wrap(&probe, &[], None) {
        CommandSpec::Argv(argv) => argv,
        CommandSpec::Shell(s) => vec!["sh".into(), "-c".into(), s],
    };
    let (program, rest) = argv.split_first().ok_or(ContainerError::NotInstalled {
        runtime: None,
        host: Some(remote.name.clone()),
    })?;
    let failed = |message: String| ContainerError::Failed {
        runtime: "ssh".to_string(),
        what: "runtime probe".to_string(),
        host: Some(remote.name.clone()),
        message,
    };
    let out = tokio::time::timeout(
        QUERY_TIMEOUT,
        Command::new(program)
            .args(rest)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| failed(format!("no answer in {} s", QUERY_TIMEOUT.as_secs())))?
    .map_err(|e| failed(e.to_string()))?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "podman" => Ok(ContainerRuntime::Podman),
        "docker" => Ok(ContainerRuntime::Docker),
        _ if out.status.code() == Some(super::ssh::SSH_FAILED) => Err(failed(
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("no message")
                .to_string(),
        )),
        _ => Err(ContainerError::NotInstalled {
            runtime: None,
            host: Some(remote.name.clone()),
        }),
    }
}

/// The registry an image reference is pulled from: its first component
/// when that names a host (has a `.` or `:`, or is `localhost`), else
/// Docker Hub.
pub fn registry_of(image: &str) -> String {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first.to_string()
        }
        _ => "docker.io".to_string(),
    }
}

/// `sha256:<hex>` whichever way the runtime prints an id.
pub fn normalize_id(id: &str) -> String {
    let id = id.trim();
    if id.contains(':') {
        id.to_string()
    } else {
        format!("sha256:{id}")
    }
}

/// A container as `container inspect` describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    /// The image reference it was started from.
    pub image: String,
    /// Its image's id (`sha256:…`).
    pub image_id: String,
    pub running: bool,
    /// `running`, `exited`, `created`, ...
    pub status: String,
    pub started_at: Option<DateTime<Utc>>,
    pub labels: BTreeMap<String, String>,
}

impl ContainerInfo {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }

    /// Started by adeploy for `service`.
    pub fn owned_by(&self, service: &str) -> bool {
        self.label(LABEL_SERVICE) == Some(service)
    }
}

/// Reads `container inspect` output (a JSON array).
pub fn parse_inspect(json: &str) -> Result<Vec<ContainerInfo>, String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let items = value.as_array().ok_or("not a JSON array")?;
    let text = |v: &serde_json::Value, path: &[&str]| -> Option<String> {
        let mut cur = v;
        for p in path {
            cur = cur.get(p)?;
        }
        cur.as_str().map(str::to_string)
    };
    items
        .iter()
        .map(|c| {
            let id = text(c, &["Id"]).ok_or("a container without Id")?;
            let labels = c
                .get("Config")
                .and_then(|cfg| cfg.get("Labels"))
                .and_then(|l| l.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let state = c.get("State");
            Ok(ContainerInfo {
                id,
                name: text(c, &["Name"])
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: text(c, &["Config", "Image"])
                    .or_else(|| text(c, &["ImageName"]))
                    .unwrap_or_default(),
                image_id: text(c, &["Image"])
                    .map(|i| normalize_id(&i))
                    .unwrap_or_default(),
                running: state
                    .and_then(|s| s.get("Running"))
                    .and_then(serde_json::Value::as_bool)
                    .unwrap_or(false),
                status: text(c, &["State", "Status"]).unwrap_or_default(),
                started_at: text(c, &["State", "StartedAt"])
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .filter(|t| t.timestamp() > 0),
                labels,
            })
        })
        .collect()
}

/// A container runtime on one machine: the program, its options, and the
/// host when it is remote.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: ContainerRuntime,
    /// `runtime_options`: before the subcommand.
    pub options: Vec<String>,
    pub remote: Option<RemoteHost>,
}

impl Runtime {
    pub fn program(&self) -> &'static str {
        self.kind.program()
    }

    fn host(&self) -> Option<String> {
        self.remote.as_ref().map(|r| r.name.clone())
    }

    /// `program options args...`, wrapped in ssh for a remote host (with
    /// `env` set there; locally the caller's [`RunOptions::env`] applies).
    pub fn command(&self, args: &[String], env: &[(String, String)]) -> CommandSpec {
        let mut argv = vec![self.program().to_string()];
        argv.extend(self.options.iter().cloned());
        argv.extend(args.iter().cloned());
        let spec = CommandSpec::Argv(argv);
        match &self.remote {
            Some(r) => r.target().wrap(&spec, env, None),
            None => spec,
        }
    }

    /// Runs a query and returns its stdout.
    async fn query(&self, what: &str, args: &[String]) -> Result<String, ContainerError> {
        let argv = match self.command(args, &[]) {
            CommandSpec::Argv(argv) => argv,
            CommandSpec::Shell(s) => vec!["sh".into(), "-c".into(), s],
        };
        let output_err = |message: String| ContainerError::Failed {
            runtime: self.program().to_string(),
            what: what.to_string(),
            host: self.host(),
            message,
        };
        let Some((program, rest)) = argv.split_first() else {
            return Err(output_err("empty command".to_string()));
        };
        let mut cmd = Command::new(program);
        cmd.args(rest)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let out = match tokio::time::timeout(QUERY_TIMEOUT, cmd.output()).await {
            Err(_) => {
                return Err(output_err(format!(
                    "no answer in {} s",
                    QUERY_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ContainerError::NotInstalled {
                    runtime: Some(self.kind),
                    host: None,
                });
            }
            Ok(Err(e)) => return Err(output_err(e.to_string())),
            Ok(Ok(out)) => out,
        };
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let line = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .to_string();
            if self.remote.is_some() && out.status.code() == Some(super::ssh::SSH_FAILED) {
                return Err(output_err(format!("ssh failed: {line}")));
            }
            if self.remote.is_some() && out.status.code() == Some(127) {
                return Err(ContainerError::NotInstalled {
                    runtime: Some(self.kind),
                    host: self.host(),
                });
            }
            return Err(output_err(line));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The containers of `service` (by label) and every container whose name
    /// starts with `prefix` (adeploy's names), newest first.
    pub async fn containers(
        &self,
        service: &str,
        prefix: &str,
    ) -> Result<Vec<ContainerInfo>, ContainerError> {
        let mut ids: Vec<String> = Vec::new();
        for filter in [
            format!("label={LABEL_SERVICE}={service}"),
            format!("name={prefix}"),
        ] {
            let args: Vec<String> = ["ps", "-a", "-q", "--no-trunc", "--filter", &filter]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let out = self.query("ps", &args).await?;
            for id in out.split_whitespace() {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut args = vec!["container".to_string(), "inspect".to_string()];
        args.extend(ids);
        let json = self.query("container inspect", &args).await?;
        let mut found = parse_inspect(&json).map_err(|message| ContainerError::Output {
            runtime: self.program().to_string(),
            what: "container inspect".to_string(),
            host: self.host(),
            message,
        })?;
        found.retain(|c| c.owned_by(service) || c.name.starts_with(prefix));
        found.sort_by_key(|c| std::cmp::Reverse(c.started_at));
        Ok(found)
    }

    /// One container by name or id (`None` if there is none).
    pub async fn inspect(&self, name: &str) -> Result<Option<ContainerInfo>, ContainerError> {
        let args = vec!["container".into(), "inspect".into(), name.to_string()];
        match self.query("container inspect", &args).await {
            Ok(json) => Ok(parse_inspect(&json)
                .map_err(|message| ContainerError::Output {
                    runtime: self.program().to_string(),
                    what: "container inspect".to_string(),
                    host: self.host(),
                    message,
                })?
                .into_iter()
                .next()),
            Err(ContainerError::Failed { message, .. })
                if message.contains("no such") || message.contains("No such") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The id of a local image (`None` when the runtime does not have it).
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, ContainerError> {
        let args = vec![
            "image".into(),
            "inspect".into(),
            "--format".into(),
            "{{.Id}}".into(),
            image.to_string(),
        ];
        match self.query("image inspect", &args).await {
            Ok(out) if !out.trim().is_empty() => Ok(Some(normalize_id(&out))),
            Ok(_) => Ok(None),
            Err(ContainerError::Failed { message, .. })
                if !message.starts_with("ssh failed") && !message.starts_with("no answer") =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs an action (logged, under `opts`' timeout and cancellation);
    /// a failure names the runtime, `what` and the runtime's last line.
    pub async fn act(
        &self,
        what: &str,
        args: &[String],
        opts: &RunOptions<'_>,
    ) -> Result<CommandOutcome, ContainerError> {
        let spec = self.command(args, opts.env);
        let local_env: Vec<(String, String)> = if self.remote.is_some() {
            Vec::new()
        } else {
            opts.env.to_vec()
        };
        let mut o = *opts;
        o.env = &local_env;
        o.tracker = None;
        let outcome = match run_command(&spec, &o).await {
            Err(ExecError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Err(ContainerError::NotInstalled {
                    runtime: Some(self.kind),
                    host: None,
                });
            }
            other => other?,
        };
        if outcome.success {
            return Ok(outcome);
        }
        if let Some(r) = &self.remote
            && let Some(m) = r.target().describe_failure(&outcome)
        {
            return Err(ContainerError::Failed {
                runtime: self.program().to_string(),
                what: what.to_string(),
                host: self.host(),
                message: m,
            });
        }
        if self.remote.is_some() && outcome.code == Some(127) {
            return Err(ContainerError::NotInstalled {
                runtime: Some(self.kind),
                host: self.host(),
            });
        }
        let message = if outcome.timed_out || outcome.cancelled {
            outcome.describe()
        } else {
            outcome
                .tail
                .iter()
                .rev()
                .map(|l| l.trim())
                .find(|l| !l.is_empty() && !l.contains("level=warning"))
                .map_or_else(|| outcome.describe(), str::to_string)
        };
        Err(ContainerError::Failed {
            runtime: self.program().to_string(),
            what: what.to_string(),
            host: self.host(),
            message,
        })
    }

    /// Makes sure `image` is present (pulling it if not) and returns its id.
    pub async fn ensure_image(
        &self,
        image: &str,
        opts: &RunOptions<'_>,
    ) -> Result<String, ContainerError> {
        if let Some(id) = self.image_id(image).await? {
            return Ok(id);
        }
        let unavailable = |message: String| ContainerError::ImageUnavailable {
            image: image.to_string(),
            registry: registry_of(image),
            host: self.host(),
            message,
        };
        match self
            .act(
                &format!("pull {image}"),
                &["pull".into(), image.into()],
                opts,
            )
            .await
        {
            Ok(_) => {}
            Err(ContainerError::Failed { message, .. }) => return Err(unavailable(message)),
            Err(e) => return Err(e),
        }
        self.image_id(image)
            .await?
            .ok_or_else(|| unavailable("the pull succeeded but the image is not there".into()))
    }

    /// `rm -f NAME`, not logged; a container that is not there is fine.
    pub async fn remove_quietly(&self, name: &str) -> Result<(), ContainerError> {
        let args = vec!["rm".into(), "-f".into(), name.to_string()];
        match self.query("rm", &args).await {
            Ok(_) => Ok(()),
            Err(ContainerError::Failed { message, .. })
                if message.contains("no such") || message.contains("No such") =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// The last line a container wrote (for "it exited at once" messages).
    pub async fn last_log_line(&self, name: &str) -> Option<String> {
        let args = vec!["logs".into(), "--tail".into(), "5".into(), name.to_string()];
        let CommandSpec::Argv(argv) = self.command(&args, &[]) else {
            return None;
        };
        let (program, rest) = argv.split_first()?;
        let out = tokio::time::timeout(
            QUERY_TIMEOUT,
            Command::new(program)
                .args(rest)
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .ok()?
        .ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| crate::config::one_line(l).chars().take(200).collect())
    }

    /// `stop -t SECONDS NAME`.
    pub async fn stop(
        &self,
        name: &str,
        timeout_s: u32,
        opts: &RunOptions<'_>,
    ) -> Result<(), ContainerError> {
        let args = vec![
            "stop".into(),
            "-t".into(),
            timeout_s.to_string(),
            name.into(),
        ];
        self.act(&format!("stop {name}"), &args, opts)
            .await
            .map(drop)
    }

    /// `start NAME`.
    pub async fn start(&self, name: &str, opts: &RunOptions<'_>) -> Result<(), ContainerError> {
        self.act(
            &format!("start {name}"),
            &["start".into(), name.into()],
            opts,
        )
        .await
        .map(drop)
    }

    /// `rm -f NAME` (a running container is killed).
    pub async fn remove(&self, name: &str, opts: &RunOptions<'_>) -> Result<(), ContainerError> {
        self.act(
            &format!("rm {name}"),
            &["rm".into(), "-f".into(), name.into()],
            opts,
        )
        .await
        .map(drop)
    }

    /// `rename OLD NEW`.
    pub async fn rename(
        &self,
        old: &str,
        new: &str,
        opts: &RunOptions<'_>,
    ) -> Result<(), ContainerError> {
        self.act(
            &format!("rename {old}"),
            &["rename".into(), old.into(), new.into()],
            opts,
        )
        .await
        .map(drop)
    }
}

/// What `run` starts: everything of the `run` command line.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub name: String,
    /// `image:tag`.
    pub image: String,
    pub labels: Vec<(String, String)>,
    /// Names of variables passed in (`-e NAME`: the value comes from the
    /// runtime's environment, so it is not on the command line).
    pub env: Vec<String>,
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
    pub run_options: Vec<String>,
    pub args: Vec<String>,
}

impl RunSpec {
    /// The arguments after the program and its options.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            self.name.clone(),
        ];
        for (k, v) in &self.labels {
            a.push("--label".into());
            a.push(format!("{k}={v}"));
        }
        for e in &self.env {
            a.push("-e".into());
            a.push(e.clone());
        }
        for p in &self.ports {
            a.push("-p".into());
            a.push(p.clone());
        }
        for v in &self.volumes {
            a.push("-v".into());
            a.push(v.clone());
        }
        a.extend(self.run_options.iter().cloned());
        a.push(self.image.clone());
        a.extend(self.args.iter().cloned());
        a
    }
}

/// The directory nothing is run in (runtime calls do not depend on it).
pub fn neutral_dir() -> &'static Path {
    Path::new("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_are_named_like_the_runtimes_do() {
        assert_eq!(registry_of("localhost/web"), "localhost");
        assert_eq!(
            registry_of("registry.example.com/team/web"),
            "registry.example.com"
        );
        assert_eq!(registry_of("reg:5000/web"), "reg:5000");
        assert_eq!(registry_of("library/nginx"), "docker.io");
        assert_eq!(registry_of("nginx"), "docker.io");
    }

    #[test]
    fn ids_are_normalised() {
        assert_eq!(normalize_id("abc\n"), "sha256:abc");
        assert_eq!(normalize_id("sha256:abc"), "sha256:abc");
    }

    #[test]
    fn inspect_output_of_podman_and_docker_reads_the_same() {
        let podman = r#"[{"Id":"c1","Name":"adeploy-web-1","Image":"0f73","ImageName":"localhost/web:1",
            "State":{"Status":"running","Running":true,"StartedAt":"2026-11-30T05:34:11.995048154Z"},
            "Config":{"Image":"localhost/web:1","Labels":{"adeploy.service":"web"}}}]"#;
        let docker = r#"[{"Id":"c1","Name":"/adeploy-web-1","Image":"sha256:0f73",
            "State":{"Status":"exited","Running":false,"StartedAt":"0001-01-01T00:00:00Z"},
            "Config":{"Image":"localhost/web:1","Labels":null}}]"#;
        let p = parse_inspect(podman).unwrap();
        assert_eq!(p[0].name, "adeploy-web-1");
        assert_eq!(p[0].image_id, "sha256:0f73");
        assert!(p[0].running && p[0].owned_by("web"));
        assert!(p[0].started_at.is_some());
        let d = parse_inspect(docker).unwrap();
        assert_eq!(d[0].name, "adeploy-web-1");
        assert_eq!(d[0].image_id, "sha256:0f73");
        assert!(!d[0].running && !d[0].owned_by("web"));
        assert_eq!(d[0].started_at, None);
        assert!(parse_inspect("{}").is_err());
    }

    #[test]
    fn run_spec_passes_env_by_name_only() {
        let spec = RunSpec {
            name: "adeploy-web-2".into(),
            image: "localhost/web:2".into(),
            labels: vec![(LABEL_SERVICE.into(), "web".into())],
            env: vec!["TOKEN".into()],
            ports: vec!["127.0.0.1:8080:80".into()],
            volumes: vec![],
            run_options: vec!["--network".into(), "host".into()],
            args: vec!["/bin/httpd".into()],
        };
        assert_eq!(
            spec.argv().join(" "),
            "run -d --name adeploy-web-2 --label adeploy.service=web -e TOKEN -p 127.0.0.1:8080:80 --network host localhost/web:2 /bin/httpd"
        );
    }

    #[test]
    fn a_missing_runtime_is_one_line_naming_it() {
        let e = ContainerError::NotInstalled {
            runtime: Some(ContainerRuntime::Docker),
            host: Some("web-1".into()),
        };
        assert!(e.is_bad_input());
        assert_eq!(
            e.to_string(),
            "container runtime docker is not installed on web-1 (not on PATH): install it, or set the service's `runtime` to the one that is"
        );
    }
}
