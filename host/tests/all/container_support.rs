//! Real podman for the container tests: images built here from Debian's
//! busybox-static (no registry), unique names per test, and removal of
//! every container and image a test made. Shared by the library's and the
//! CLI's test binaries (`#[path]`).
//!
//! On this kind of machine rootful podman needs `--runtime runc`, the host
//! network and lowered limits: they are the test configs'
//! `runtime_options` / `run_options`, never adeploy's.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

/// `runtime_options` of the test configs.
pub const RUNTIME_OPTIONS: &str = r#"["--runtime", "runc"]"#;
/// `run_options` of the test configs.
pub const RUN_OPTIONS: &str =
    r#"["--network", "host", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"]"#;

/// `podman --runtime runc ARGS`.
pub fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(["--runtime", "runc"])
        .args(args)
        .output()
        .expect("podman is needed for the container tests; .ci/run installs it (podman runc uidmap busybox-static)")
}

/// A lowercase name unique to this test run: `PREFIX` + 8 hex digits.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{:08x}",
        (std::process::id().wrapping_mul(2_654_435_761)) ^ nanos
    )
}

/// A free loopback port (nothing listens on it once this returns).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET http://127.0.0.1:PORT/PATH`: the body of a 200 answer, else `None`.
pub fn get(port: u16, path: &str) -> Option<String> {
    let mut s =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.trim().to_string())
        .or_else(|| {
            head.starts_with("HTTP/1.1 200")
                .then(|| body.trim().to_string())
        })
}

/// The images of one test (`localhost/NAME:TAG`) and the containers of its
/// service: all removed on drop.
pub struct TestImages {
    /// `localhost/adeploy-test-…`, without a tag.
    pub repo: String,
    /// The service whose containers are removed on drop.
    pub service: String,
    tags: Vec<String>,
}

impl TestImages {
    pub fn new(service: &str) -> TestImages {
        TestImages {
            repo: format!("localhost/adeploy-test-{service}"),
            service: service.to_string(),
            tags: Vec::new(),
        }
    }

    /// Builds `repo:tag`: busybox as /bin/busybox with sh and httpd, and
    /// `/www/health` saying `health` (none: no health page, a 404).
    pub fn build(&mut self, tag: &str, health: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["bin", "www", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let busybox = ["/bin/busybox", "/usr/bin/busybox"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect(
                "busybox (busybox-static) is needed for the container tests; .ci/run installs it",
            );
        std::fs::copy(busybox, root.join("bin/busybox")).unwrap();
        for l in ["sh", "httpd", "sleep", "cat", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(l)).unwrap();
        }
        if let Some(h) = health {
            std::fs::write(root.join("www/health"), format!("{h}\n")).unwrap();
        }
        std::fs::write(root.join("www/index.html"), format!("{tag}\n")).unwrap();
        let tar = dir.path().join("img.tar");
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-cf")
            .arg(&tar)
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
        let image = format!("{}:{tag}", self.repo);
        let o = podman(&["import", "-q", tar.to_str().unwrap(), &image]);
        assert!(
            o.status.success(),
            "podman import: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        self.tags.push(tag.to_string());
        image
    }

    /// The image id of `repo:tag` (`sha256:…`).
    pub fn id(&self, tag: &str) -> String {
        let o = podman(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}}",
            &format!("{}:{tag}", self.repo),
        ]);
        assert!(o.status.success());
        format!("sha256:{}", String::from_utf8_lossy(&o.stdout).trim())
    }

    /// Names of this service's containers with their state: `(name, running)`.
    pub fn containers(&self) -> Vec<(String, bool)> {
        let o = podman(&[
            "ps",
            "-a",
            "--filter",
            &format!("name=adeploy-{}-", self.service),
            "--format",
            "{{.Names}} {{.State}}",
        ]);
        let mut v: Vec<(String, bool)> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| {
                let (n, s) = l.split_once(' ')?;
                Some((
                    n.to_string(),
                    s.starts_with("running") || s.starts_with("Up"),
                ))
            })
            .collect();
        v.sort();
        v
    }

    /// The image id a container runs (`sha256:…`).
    pub fn container_image(&self, name: &str) -> Option<String> {
        let o = podman(&["container", "inspect", "--format", "{{.Image}}", name]);
        o.status
            .success()
            .then(|| format!("sha256:{}", String::from_utf8_lossy(&o.stdout).trim()))
    }
}

impl Drop for TestImages {
    fn drop(&mut self) {
        for filter in [
            format!("name=adeploy-{}-", self.service),
            format!("label=adeploy.service={}", self.service),
        ] {
            let o = podman(&["ps", "-a", "-q", "--filter", &filter]);
            for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = podman(&["rm", "-f", "-t", "0", id]);
            }
        }
        for t in &self.tags {
            let _ = podman(&["rmi", "-f", &format!("{}:{t}", self.repo)]);
        }
    }
}
