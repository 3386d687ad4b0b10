//! Environment faults under a bare store and under persisted dataflows, with restarts: a full disk (a
//! tmpfs of a few MiB), a read-only file system and power loss (ext4 on a loop device: `errors=remount-ro`
//! with a triggered error, `EXT4_IOC_SHUTDOWN`), too few file descriptors (`RLIMIT_NOFILE` lowered in a
//! child process) and permission denied (`setpriv` to `nobody`). From adversarial round 16, which found no
//! fault; `disk_full` came first (a bare store filled through a durable and a non-durable stream).
//!
//! Mounting needs `CAP_SYS_ADMIN` (root, as CI has here), ext4 tests `mkfs.ext4` and loop devices, the
//! permission tests `setpriv`; without them each test says so on stderr and checks nothing.

#[path = "../common/mod.rs"]
mod common;

mod df_durable;
mod df_full;
mod disk_full;
mod emfile;
mod env;
mod perms;
mod ro;
mod shutdown;
mod store_full;
