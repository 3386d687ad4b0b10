//! Environment helpers: a tmpfs of a given size (grown, shrunk, remounted read-only), and whether an
//! error is the full disk's.

use ddpersist::Error;
use std::path::PathBuf;
use std::process::Command;

/// A tmpfs mounted on a new directory, unmounted (lazily) and removed when dropped.
pub struct Tmpfs(pub PathBuf);

impl Tmpfs {
    /// A tmpfs of `kib` KiB, or `None` if this process may not mount one.
    pub fn mount_kib(kib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap().keep();
        let size = format!("size={kib}k");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&dir)
            .output()
            .is_ok_and(|o| o.status.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            eprintln!("skipped: mounting a tmpfs needs CAP_SYS_ADMIN");
            return None;
        }
        Some(Tmpfs(dir))
    }

    pub fn mount(mib: u64) -> Option<Tmpfs> {
        Self::mount_kib(mib * 1024)
    }

    /// Grows (or shrinks) the tmpfs to `kib` KiB.
    pub fn resize_kib(&self, kib: u64) {
        self.remount(&format!("remount,size={kib}k"));
    }

    pub fn resize(&self, mib: u64) {
        self.resize_kib(mib * 1024)
    }

    /// Remounts read-only (`true`) or read-write.
    pub fn read_only(&self, ro: bool) {
        self.remount(if ro { "remount,ro" } else { "remount,rw" });
    }

    fn remount(&self, opts: &str) {
        let out = Command::new("mount")
            .args(["-o", opts])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -o {opts} {}: {}",
            self.0.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Bytes used on the tmpfs.
    pub fn used(&self) -> u64 {
        let out = Command::new("df")
            .args(["-B1", "--output=used"])
            .arg(&self.0)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Whether `e` is the full disk: the I/O error itself, or the poisoned store naming it.
pub fn is_disk_full(e: &Error) -> bool {
    match e {
        Error::Io { source, .. } => source.raw_os_error() == Some(28),
        Error::Poisoned { detail } => detail.contains("No space left on device"),
        _ => false,
    }
}

/// Whether an error's message is the full disk's.
pub fn msg_is_disk_full(m: &str) -> bool {
    m.contains("No space left on device")
}

/// An ext4 file system on a loop device (an image file in a temporary directory), mounted with
/// `errors=remount-ro`: [`Ext4::trigger_error`] makes the kernel remount it read-only at once (ext4's
/// `emergency_ro`, as after a metadata error), with files open for writing; [`Ext4::recover`] unmounts
/// it, checks it with `e2fsck -fy` and mounts it again.
pub struct Ext4 {
    pub dir: PathBuf,
    image: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Ext4 {
    pub fn mount(mib: u64) -> Option<Ext4> {
        let tmp = tempfile::tempdir().unwrap();
        let image = tmp.path().join("img");
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        let ok = Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            eprintln!("skipped: no mkfs.ext4");
            return None;
        }
        let fs = Ext4 {
            dir,
            image,
            _tmp: tmp,
        };
        if !fs.mount_now() {
            eprintln!("skipped: mounting a loop device needs CAP_SYS_ADMIN and loop devices");
            return None;
        }
        Some(fs)
    }

    fn mount_now(&self) -> bool {
        Command::new("mount")
            .args(["-o", "loop,errors=remount-ro"])
            .arg(&self.image)
            .arg(&self.dir)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn loop_dev(&self) -> String {
        let out = Command::new("losetup")
            .arg("-j")
            .arg(&self.image)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        let dev = s.split(':').next().unwrap().trim().to_string();
        dev.rsplit('/').next().unwrap().to_string()
    }

    /// The kernel remounts the file system read-only (an ext4 error under `errors=remount-ro`).
    pub fn trigger_error(&self) {
        let path = format!("/sys/fs/ext4/{}/trigger_fs_error", self.loop_dev());
        std::fs::write(&path, "1").unwrap_or_else(|e| panic!("{path}: {e}"));
    }

    /// Unmounts, checks and mounts again (read-write); every file of the store must be closed.
    pub fn recover(&self) {
        let out = Command::new("umount").arg(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = Command::new("e2fsck").args(["-fy"]).arg(&self.image).output();
        assert!(self.mount_now(), "mount again");
    }
}

impl Drop for Ext4 {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

impl Ext4 {
    /// `EXT4_IOC_SHUTDOWN` with `EXT4_GOING_FLAGS_NOLOGFLUSH`: the file system stops at once, as at a
    /// power loss (nothing not yet committed by the journal or written in place reaches the disk), and
    /// every later call on it fails (`EIO`). [`Ext4::remount`] brings it back (journal replay).
    pub fn shutdown(&self) {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&self.dir).unwrap();
        let mut flags: u32 = 2;
        // SAFETY: `EXT4_IOC_SHUTDOWN` on an open descriptor of the mount reads one `u32` through the
        // pointer, a valid local that outlives the call.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x8004_587D, &mut flags as *mut u32) };
        assert_eq!(rc, 0, "EXT4_IOC_SHUTDOWN: {}", std::io::Error::last_os_error());
    }

    /// Unmounts and mounts again (no fsck: the journal replays).
    pub fn remount(&self) {
        let out = Command::new("umount").arg(&self.dir).output().unwrap();
        assert!(
            out.status.success(),
            "umount: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(self.mount_now(), "mount again");
    }
}
