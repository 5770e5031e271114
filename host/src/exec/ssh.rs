//! Fleet commands over the system OpenSSH client.
//!
//! Why the `ssh` binary and not an ssh library: a fleet already has its ssh
//! setup — `~/.ssh/config` (aliases, jump hosts, per-host keys), the agent,
//! known_hosts, hardware keys — and the client is what honours all of it. A
//! remote command is therefore just a local `ssh ... HOST SCRIPT` process,
//! run by [`super::run_command`] like any other: process group, timeout,
//! cancellation and output capture come for free.
//!
//! What adeploy always adds: `BatchMode=yes` (a prompt would hang a
//! deployment), `ConnectTimeout` (an unreachable host fails its step in
//! seconds), keep-alives (a connection that dies mid-command fails instead of
//! hanging until the service timeout), strict host key checking unless the
//! config says `accept-new`, and — with `reuse_connections` — a ControlMaster
//! socket per host under the state directory, so the deploy, health and
//! rollback commands of one host share one TCP connection and handshake.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::{CommandSpec, InventoryHost, SshSettings};

use super::CommandOutcome;

/// ssh's exit status when the connection (not the remote command) failed.
pub const SSH_FAILED: i32 = 255;

/// Unix socket paths are limited to 108 bytes; leave room.
const MAX_SOCKET_PATH: usize = 100;

/// One inventory host, ready to run commands on.
#[derive(Debug, Clone)]
pub struct SshTarget<'a> {
    /// The inventory name.
    pub name: &'a str,
    pub host: &'a InventoryHost,
    pub settings: &'a SshSettings,
    /// Where ControlMaster sockets live (`None`: no connection reuse).
    pub control_dir: Option<&'a Path>,
}

/// `s` quoted for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// `~/x` with the home directory spelled out (ssh would expand `-i ~/x`
/// itself, but not `-o UserKnownHostsFile=~/x` in every version).
fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// The script the remote shell runs: `cd` into `workdir`, then `command`
/// with `env` set.
pub fn remote_script(
    command: &CommandSpec,
    env: &[(String, String)],
    workdir: Option<&Path>,
) -> String {
    let mut script = String::new();
    if let Some(dir) = workdir {
        script.push_str(&format!(
            "cd {} && ",
            shell_quote(&dir.display().to_string())
        ));
    }
    script.push_str("env");
    for (k, v) in env {
        script.push(' ');
        script.push_str(&shell_quote(&format!("{k}={v}")));
    }
    match command {
        CommandSpec::Shell(s) => {
            script.push_str(" sh -c ");
            script.push_str(&shell_quote(s));
        }
        CommandSpec::Argv(argv) => {
            for a in argv {
                script.push(' ');
                script.push_str(&shell_quote(a));
            }
        }
    }
    script
}

impl SshTarget<'_> {
    /// `address:port` for messages.
    pub fn endpoint(&self) -> String {
        match self.host.port {
            Some(p) => format!("{}:{p}", self.host.address),
            None => self.host.address.clone(),
        }
    }

    /// The ControlMaster socket of this host: short and unique per
    /// (name, user, address, port). `None` without reuse or when the state
    /// directory's path is too long for a socket.
    fn control_path(&self) -> Option<PathBuf> {
        let dir = self.control_dir?;
        let key = format!(
            "{}\n{}\n{}\n{}",
            self.name,
            self.host.user.as_deref().unwrap_or(""),
            self.host.address,
            self.host.port.unwrap_or(0)
        );
        let digest = Sha256::digest(key.as_bytes());
        let short: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        let path = dir.join(short);
        (path.as_os_str().len() <= MAX_SOCKET_PATH).then_some(path)
    }

    /// The `ssh` options (everything before the destination).
    pub fn options(&self) -> Vec<String> {
        let s = self.settings;
        let mut o: Vec<String> = Vec::new();
        let mut opt = |k: &str, v: String| {
            o.push("-o".into());
            o.push(format!("{k}={v}"));
        };
        opt("BatchMode", "yes".into());
        opt(
            "ConnectTimeout",
            self.host
                .connect_timeout_s
                .unwrap_or(s.connect_timeout_s)
                .max(1)
                .to_string(),
        );
        opt("ServerAliveInterval", "5".into());
        opt("ServerAliveCountMax", "3".into());
        opt(
            "StrictHostKeyChecking",
            if s.strict_host_key_checking {
                "yes"
            } else {
                "accept-new"
            }
            .into(),
        );
        if let Some(kh) = &s.known_hosts {
            opt("UserKnownHostsFile", expand_home(kh).display().to_string());
        }
        match self.control_path() {
            Some(path) => {
                opt("ControlMaster", "auto".into());
                opt("ControlPath", path.display().to_string());
                opt("ControlPersist", format!("{}s", s.control_persist_s.max(1)));
            }
            None => opt("ControlMaster", "no".into()),
        }
        if let Some(id) = &self.host.identity_file {
            o.push("-i".into());
            o.push(expand_home(id).display().to_string());
            o.push("-o".into());
            o.push("IdentitiesOnly=yes".into());
        }
        if let Some(port) = self.host.port {
            o.push("-p".into());
            o.push(port.to_string());
        }
        if let Some(user) = &self.host.user {
            o.push("-l".into());
            o.push(user.clone());
        }
        if let Some(f) = &s.config_file {
            o.push("-F".into());
            o.push(expand_home(f).display().to_string());
        }
        o
    }

    /// `command` as a local `ssh` invocation that runs it on this host.
    pub fn wrap(
        &self,
        command: &CommandSpec,
        env: &[(String, String)],
        workdir: Option<&Path>,
    ) -> CommandSpec {
        let mut argv = vec!["ssh".to_string()];
        argv.extend(self.options());
        argv.push(self.host.address.clone());
        argv.push(remote_script(command, env, workdir));
        CommandSpec::Argv(argv)
    }

    /// What went wrong, naming the host when the connection failed
    /// (`ssh to web-1 (10.0.0.11:22) failed: Connection refused`).
    pub fn describe_failure(&self, outcome: &CommandOutcome) -> Option<String> {
        (outcome.code == Some(SSH_FAILED)).then(|| {
            format!(
                "ssh to {} ({}) failed: {}",
                self.name,
                self.endpoint(),
                outcome.last_line().unwrap_or("no message")
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> InventoryHost {
        InventoryHost {
            address: "10.0.0.11".into(),
            port: Some(2222),
            user: Some("deploy".into()),
            identity_file: Some("/keys/id".into()),
            labels: vec![],
            connect_timeout_s: Some(3),
        }
    }

    #[test]
    fn quoting_survives_the_remote_shell() {
        assert_eq!(shell_quote("plain-word_1.2"), "plain-word_1.2");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        // Round trip through a real shell.
        let tricky = r#"echo "$HOME" `id` $(x) 'q' ; \ * ?"#;
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(tricky)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), tricky);
    }

    #[test]
    fn remote_script_sets_env_and_workdir() {
        let script = remote_script(
            &CommandSpec::Shell("echo $A > out".into()),
            &[("A".into(), "x y".into())],
            Some(Path::new("/srv/app")),
        );
        assert_eq!(script, "cd /srv/app && env 'A=x y' sh -c 'echo $A > out'");
        let tmp = tempfile::tempdir().unwrap();
        let local = remote_script(
            &CommandSpec::Argv(vec!["sh".into(), "-c".into(), "echo \"$A\" > out".into()]),
            &[("A".into(), "it's".into())],
            Some(tmp.path()),
        );
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&local)
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("out")).unwrap(),
            "it's\n"
        );
    }

    #[test]
    fn options_are_batch_strict_and_per_host() {
        let h = host();
        let settings = SshSettings::default();
        let dir = PathBuf::from("/state/ssh");
        let t = SshTarget {
            name: "web-1",
            host: &h,
            settings: &settings,
            control_dir: Some(&dir),
        };
        let o = t.options().join(" ");
        for want in [
            "-o BatchMode=yes",
            "-o ConnectTimeout=3",
            "-o StrictHostKeyChecking=yes",
            "-o ControlMaster=auto",
            "-o ControlPersist=60s",
            "-i /keys/id -o IdentitiesOnly=yes",
            "-p 2222",
            "-l deploy",
        ] {
            assert!(o.contains(want), "{want} missing from {o}");
        }
        assert!(o.contains("-o ControlPath=/state/ssh/"), "{o}");
        let relaxed = SshSettings {
            strict_host_key_checking: false,
            reuse_connections: false,
            ..SshSettings::default()
        };
        let t2 = SshTarget {
            settings: &relaxed,
            control_dir: None,
            ..t.clone()
        };
        let o2 = t2.options().join(" ");
        assert!(o2.contains("StrictHostKeyChecking=accept-new"), "{o2}");
        assert!(o2.contains("ControlMaster=no"), "{o2}");
        // Another host gets another socket.
        let other = SshTarget {
            name: "web-2",
            ..t.clone()
        };
        assert_ne!(t.control_path(), other.control_path());
        // A state dir too deep for a unix socket disables reuse.
        let deep = PathBuf::from(format!("/{}", "d".repeat(120)));
        let t3 = SshTarget {
            control_dir: Some(&deep),
            ..t
        };
        assert!(t3.options().join(" ").contains("ControlMaster=no"));
    }
}
