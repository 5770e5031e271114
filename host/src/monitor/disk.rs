//! The state directory's filesystem: which mount holds it, its space, and the
//! I/O counters of the block device(s) under it.
//!
//! Listing the mounts (`/proc/mounts`, `/dev/disk/by-id`, a `stat` per mount
//! point) costs far more than reading one filesystem's space, so the choice of
//! mount point is cached and the list is read again at most every
//! [`RELIST_EVERY`] (mounts rarely change during a deployment). A sample then
//! costs one `statvfs`.
//!
//! I/O rates come from `/proc/diskstats` (the kernel's cumulative sectors read
//! and written). When the state directory's filesystem sits on a block device
//! listed there (matched by the device number of the directory), its counters
//! are used; otherwise (tmpfs, overlay, btrfs subvolumes: filesystems without a
//! device of their own) the counters of every physical disk are summed, leaving
//! out stacked and memory-backed devices (`dm-*`, `md*`, `loop*`, `ram*`,
//! `zram*`), whose I/O is counted again on the disks below them or is not disk
//! I/O at all. A rate is the difference between two readings divided by the
//! time between them, so the first reading has none.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sysinfo::{DiskRefreshKind, Disks};

/// How long the mount point chosen for the state directory is trusted before
/// the mount list is read again.
pub const RELIST_EVERY: Duration = Duration::from_secs(10);

/// `/proc/diskstats` counts 512-byte sectors whatever the device's sector size.
const SECTOR_BYTES: u64 = 512;

/// Space on the filesystem holding the state directory.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Space {
    pub mount: PathBuf,
    pub total: u64,
    pub available: u64,
}

impl Space {
    /// Percent of the filesystem in use, 0..100.
    pub fn percent_used(&self) -> f64 {
        let total = self.total.max(1) as f64;
        ((total - self.available as f64) / total * 100.0).clamp(0.0, 100.0)
    }
}

/// Read and write rates since the previous reading, and the devices they are for.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct IoRates {
    pub read_bytes_per_s: Option<f64>,
    pub write_bytes_per_s: Option<f64>,
    pub devices: Vec<String>,
}

#[derive(Debug)]
struct IoReading {
    at: Instant,
    devices: Vec<String>,
    read_bytes: u64,
    written_bytes: u64,
}

/// The cached mount choice and the previous I/O reading.
#[derive(Debug)]
pub(crate) struct DiskState {
    path: PathBuf,
    disks: Option<Disks>,
    chosen: Option<usize>,
    listed_at: Option<Instant>,
    /// (major, minor) of the filesystem holding `path`.
    device: Option<(u64, u64)>,
    /// Physical disks, for filesystems without a block device of their own.
    whole_disks: Vec<String>,
    previous_io: Option<IoReading>,
}

impl DiskState {
    pub fn new(path: &Path) -> DiskState {
        DiskState {
            path: path.to_path_buf(),
            disks: None,
            chosen: None,
            listed_at: None,
            device: None,
            whole_disks: Vec::new(),
            previous_io: None,
        }
    }

    /// Reads the mount list again if the cached choice is older than [`RELIST_EVERY`].
    fn relist_if_stale(&mut self) {
        if self.listed_at.is_some_and(|at| at.elapsed() < RELIST_EVERY) {
            return;
        }
        self.listed_at = Some(Instant::now());
        let path = nearest_existing(&self.path);
        self.device = std::fs::metadata(&path).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            split_dev(m.dev())
        });
        self.whole_disks = whole_disks();
        match Disks::new_with_refreshed_list_specifics(DiskRefreshKind::nothing()) {
            Ok(disks) => {
                self.chosen = disks
                    .iter()
                    .enumerate()
                    .filter(|(_, d)| path.starts_with(d.mount_point()))
                    .max_by_key(|(_, d)| d.mount_point().as_os_str().len())
                    .map(|(i, _)| i);
                self.disks = Some(disks);
            }
            Err(_) => {
                self.chosen = None;
                self.disks = None;
            }
        }
    }

    /// Space on the filesystem holding the path, or `None` when no mount holds it.
    pub fn space(&mut self) -> Option<Space> {
        self.relist_if_stale();
        let index = self.chosen?;
        let disk = self.disks.as_mut()?.get_mut(index)?;
        disk.refresh_specifics(DiskRefreshKind::nothing().with_storage());
        (disk.total_space() > 0).then(|| Space {
            mount: disk.mount_point().to_path_buf(),
            total: disk.total_space(),
            available: disk.available_space(),
        })
    }

    /// I/O rates since the previous call (`None` on the first call, when the
    /// devices read changed, or when `/proc/diskstats` is not available).
    pub fn io_rates(&mut self) -> IoRates {
        self.relist_if_stale();
        let now = Instant::now();
        let Some((devices, read_bytes, written_bytes)) = std::fs::read_to_string("/proc/diskstats")
            .ok()
            .and_then(|text| io_counters(&text, self.device, &self.whole_disks))
        else {
            self.previous_io = None;
            return IoRates::default();
        };
        let mut rates = IoRates {
            devices: devices.clone(),
            ..IoRates::default()
        };
        if let Some(prev) = &self.previous_io
            && prev.devices == devices
        {
            let seconds = now.duration_since(prev.at).as_secs_f64();
            if seconds > 0.0 {
                let rate =
                    |now: u64, before: u64| now.checked_sub(before).map(|d| d as f64 / seconds);
                rates.read_bytes_per_s = rate(read_bytes, prev.read_bytes);
                rates.write_bytes_per_s = rate(written_bytes, prev.written_bytes);
            }
        }
        self.previous_io = Some(IoReading {
            at: now,
            devices,
            read_bytes,
            written_bytes,
        });
        rates
    }
}

/// The path made absolute and resolved through its nearest existing ancestor
/// (the state directory may not exist yet).
fn nearest_existing(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    absolute
        .ancestors()
        .find_map(|p| p.canonicalize().ok())
        .unwrap_or(absolute)
}

/// (major, minor) of a Linux device number (glibc's `gnu_dev_major`/`minor`).
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff);
    let minor = ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff);
    (major, minor)
}

/// Physical disks: `/sys/block` without stacked and memory-backed devices.
fn whole_disks() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            !["loop", "ram", "zram", "dm-", "md"]
                .iter()
                .any(|prefix| n.starts_with(prefix))
        })
        .collect();
    names.sort();
    names
}

/// (devices, bytes read, bytes written) from `/proc/diskstats` text: the
/// device numbered `device` if listed, else the sum over `whole_disks`.
fn io_counters(
    diskstats: &str,
    device: Option<(u64, u64)>,
    whole_disks: &[String],
) -> Option<(Vec<String>, u64, u64)> {
    // major minor name reads merged sectors_read ms writes merged sectors_written …
    let lines: Vec<(u64, u64, &str, u64, u64)> = diskstats
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            Some((num(0)?, num(1)?, *f.get(2)?, num(5)?, num(9)?))
        })
        .collect();
    if let Some(dev) = device
        && let Some(&(_, _, name, read, written)) =
            lines.iter().find(|(ma, mi, ..)| (*ma, *mi) == dev)
    {
        return Some((
            vec![name.to_string()],
            read.saturating_mul(SECTOR_BYTES),
            written.saturating_mul(SECTOR_BYTES),
        ));
    }
    let mut devices = Vec::new();
    let (mut read, mut written) = (0u64, 0u64);
    for &(_, _, name, r, w) in &lines {
        if whole_disks.iter().any(|d| d == name) {
            devices.push(name.to_string());
            read = read.saturating_add(r.saturating_mul(SECTOR_BYTES));
            written = written.saturating_add(w.saturating_mul(SECTOR_BYTES));
        }
    }
    (!devices.is_empty()).then_some((devices, read, written))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DISKSTATS: &str = "\
 259       0 nvme0n1   571695 101559 38943220 165643 9824246  1076193 462375378 4140037  0  1038904 4740493
 259       1 nvme0n1p1 240    2360   15468    48     2        0       2         0        0  21      50
 253       0 dm-0      670206 0      38909056 259490 10900330 0       462374760 12906518 0  1177098 13195902
   8       0 sda       10     0      100      1      20       0       200       1        0  1       1
";

    #[test]
    fn io_counters_prefer_the_filesystems_own_device() {
        let whole = vec!["nvme0n1".to_string(), "sda".to_string()];
        let (devices, read, written) = io_counters(DISKSTATS, Some((259, 1)), &whole).unwrap();
        assert_eq!(devices, ["nvme0n1p1"]);
        assert_eq!((read, written), (15468 * 512, 2 * 512));
    }

    #[test]
    fn io_counters_sum_whole_disks_without_a_device() {
        let whole = vec!["nvme0n1".to_string(), "sda".to_string()];
        // Device 0:42 is an anonymous device (overlay, tmpfs): not in diskstats.
        let (devices, read, written) = io_counters(DISKSTATS, Some((0, 42)), &whole).unwrap();
        assert_eq!(devices, ["nvme0n1", "sda"]);
        assert_eq!(read, (38943220 + 100) * 512);
        assert_eq!(written, (462375378 + 200) * 512);
        assert_eq!(io_counters(DISKSTATS, None, &[]), None);
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(254, 0) and makedev(259, 65536 + 3).
        assert_eq!(split_dev(254 << 8), (254, 0));
        let dev = ((65539u64 & 0xffff_ff00) << 12) | (65539 & 0xff) | (259 << 8);
        assert_eq!(split_dev(dev), (259, 65539));
    }

    #[test]
    fn a_missing_directory_is_resolved_through_its_parent() {
        let p = nearest_existing(Path::new("/definitely/not/here/adeploy"));
        assert_eq!(p, Path::new("/"));
    }
}
