use nix::errno::Errno;
use std::os::fd::BorrowedFd;

/// sendfile64(2): any destination since Linux 2.6.33 (sockets, pipes, regular files).
pub(crate) fn sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  offset: Option<&mut i64>,
  count: usize,
) -> Result<usize, Errno> {
  nix::sys::sendfile::sendfile64(out, input, offset, count)
}

/// Directories on a walk are opened only to resolve names beneath them: `O_PATH` needs search
/// permission alone, as path resolution does (a plain open would also need read permission).
pub(crate) const DIRECTORY_WALK_FLAGS: nix::fcntl::OFlag = nix::fcntl::OFlag::O_PATH;

/// Whether `openat2(2)` answered at least once with something other than "not here" (Linux
/// before 5.6 answers `ENOSYS`, seccomp filters of some container runtimes `EPERM`/`ENOSYS`).
static OPENAT2_MISSING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `path` opened beneath `root` in one `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` call:
/// `ELOOP` when a symlink is on the path, `None` when the kernel has no `openat2`.
pub(crate) fn open_without_symlinks(
  root: BorrowedFd<'_>,
  path: &std::ffi::OsStr,
  flags: nix::fcntl::OFlag,
) -> Option<Result<std::os::fd::OwnedFd, Errno>> {
  use nix::fcntl::{openat2, OpenHow, ResolveFlag};
  use std::sync::atomic::Ordering;
  if OPENAT2_MISSING.load(Ordering::Relaxed) {
    return None;
  }
  let how = OpenHow::new()
    .flags(flags)
    .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
  match openat2(root, path, how) {
    // E2BIG: an open_how this kernel does not know; EPERM: seccomp's answer for an unknown syscall.
    Err(Errno::ENOSYS | Errno::E2BIG | Errno::EPERM) => {
      OPENAT2_MISSING.store(true, Ordering::Relaxed);
      None
    }
    result => Some(result),
  }
}
