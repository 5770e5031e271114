//! Plugin paths, looked up inside the world's root by the kernel.
//!
//! Why not `canonicalize` under the root: a plugin's path `/var/run/x` under
//! `diagnostics --root /img` is `/img/var/run/x`, but `/img/var/run` is a
//! symbolic link to `/run` in every Debian image, and following it on the
//! host reads the host's `/run`. Here every lookup is `openat2` on the
//! root's directory with `RESOLVE_IN_ROOT` (absolute links and `..` stay
//! inside the root, as if the root were `/`) and `RESOLVE_NO_MAGICLINKS`
//! (no `/proc/*/fd` tricks): the kernel resolves the path, in one step, so
//! nothing can swap a component between a check and the open.
//!
//! Reading is two opens: an `O_PATH` lookup (never blocks, opens nothing
//! for I/O, tells the file type via `fstat`), and, for a regular file only,
//! an `O_RDONLY | O_NONBLOCK | O_NOFOLLOW` open of the already resolved path
//! whose `fstat` must show the same file. A FIFO, socket or device is
//! refused before anything could block on it, and a file swapped in between
//! is refused too.

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags, Stat};

/// A path that exists inside the root.
#[derive(Debug)]
pub(crate) struct Found {
    /// Where it leads, as a path inside the root (`/run/x`).
    pub inside: PathBuf,
    pub stat: Stat,
}

impl Found {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// `path` (absolute, as the plugin sees it) relative to the root: its
/// normal components only.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

fn open_root(root: &Path) -> std::io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn resolve_flags() -> ResolveFlags {
    ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS
}

/// Where an open descriptor leads, as the kernel names it.
fn fd_path(fd: &impl AsFd) -> std::io::Result<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// Looks `path` up inside `root`; `None` when it does not exist (a dangling
/// link included).
pub(crate) fn lookup(root: &Path, path: &Path) -> std::io::Result<Option<Found>> {
    let root_fd = open_root(root)?;
    let fd = match rustix::fs::openat2(
        &root_fd,
        relative(path),
        OFlags::PATH | OFlags::CLOEXEC,
        Mode::empty(),
        resolve_flags(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let stat = rustix::fs::fstat(&fd)?;
    let root_real = fd_path(&root_fd)?;
    let real = fd_path(&fd)?;
    let inside = match real.strip_prefix(&root_real) {
        Ok(rest) => Path::new("/").join(rest),
        Err(_) => {
            return Err(std::io::Error::other(format!(
                "{} resolved outside the root",
                path.display()
            )));
        }
    };
    Ok(Some(Found { inside, stat }))
}

/// Reads at most `limit` bytes of the regular file `found` (from
/// [`lookup`]) inside `root`. Anything but a regular file is refused without
/// being opened for reading.
pub(crate) fn read_regular(root: &Path, found: &Found, limit: u64) -> std::io::Result<Vec<u8>> {
    let kind = found.file_type();
    if kind != FileType::RegularFile {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a regular file but {}", describe(kind)),
        ));
    }
    let root_fd = open_root(root)?;
    let fd = rustix::fs::openat2(
        &root_fd,
        relative(&found.inside),
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        resolve_flags() | ResolveFlags::NO_SYMLINKS,
    )?;
    let now = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(now.st_mode) != FileType::RegularFile
        || now.st_dev != found.stat.st_dev
        || now.st_ino != found.stat.st_ino
    {
        return Err(std::io::Error::other(
            "the file changed while it was opened",
        ));
    }
    let mut buf = Vec::new();
    std::fs::File::from(fd).take(limit).read_to_end(&mut buf)?;
    Ok(buf)
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Directory => "a directory",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Symlink => "a symbolic link",
        _ => "a special file",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_links_stay_inside_the_root() {
        let img = tempfile::tempdir().unwrap();
        let host_side = tempfile::tempdir().unwrap();
        std::fs::write(host_side.path().join("secret"), "host").unwrap();
        std::fs::create_dir_all(img.path().join("run")).unwrap();
        std::fs::create_dir_all(img.path().join("var")).unwrap();
        std::fs::write(img.path().join("run/secret"), "image").unwrap();
        // /var/run -> /run, as in every Debian image; and a link that names
        // a host path outright.
        std::os::unix::fs::symlink("/run", img.path().join("var/run")).unwrap();
        std::os::unix::fs::symlink(host_side.path(), img.path().join("out")).unwrap();
        let f = lookup(img.path(), Path::new("/var/run/secret"))
            .unwrap()
            .unwrap();
        assert_eq!(f.inside, Path::new("/run/secret"));
        assert_eq!(read_regular(img.path(), &f, 100).unwrap(), b"image");
        let escaped = lookup(img.path(), &Path::new("/out").join("secret")).unwrap();
        assert!(
            escaped.is_none(),
            "{escaped:?}: the host path is not in the image"
        );
        assert!(lookup(img.path(), Path::new("/nope")).unwrap().is_none());
    }

    #[test]
    fn special_files_are_refused_unopened() {
        let root = tempfile::tempdir().unwrap();
        let fifo = root.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let f = lookup(root.path(), Path::new("/fifo")).unwrap().unwrap();
        let err = read_regular(root.path(), &f, 10).unwrap_err();
        assert!(err.to_string().contains("a FIFO"), "{err}");
        let d = lookup(root.path(), Path::new("/")).unwrap().unwrap();
        assert!(read_regular(root.path(), &d, 10).is_err());
    }
}
