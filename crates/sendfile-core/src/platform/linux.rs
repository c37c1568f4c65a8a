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

/// Whether every byte of `[offset, offset + count)` is in the page cache now: a `preadv2` with
/// `RWF_NOWAIT` into `scratch`, which answers `EAGAIN` (or reads short) instead of waiting for
/// the disk. The caller's event loop may then `sendfile` the range without blocking on a read.
/// A raw syscall: glibc's wrapper appeared in 2.26, past the oldest glibc the package supports.
pub(crate) fn range_is_cached(input: BorrowedFd<'_>, offset: u64, scratch: &mut [u8]) -> bool {
  use std::os::fd::AsRawFd;
  let Ok(offset) = i64::try_from(offset) else {
    return false;
  };
  let iov = nix::libc::iovec {
    iov_base: scratch.as_mut_ptr().cast(),
    iov_len: scratch.len(),
  };
  // The offset as the syscall takes it: low and high halves of a word (on 64-bit, all of it
  // in the low word; the kernel shifts the high one out).
  let bits = usize::BITS;
  let low = offset as u64 as nix::libc::c_ulong;
  let high = ((offset as u64) >> (bits / 2) >> (bits / 2)) as nix::libc::c_ulong;
  // SAFETY: `iov` describes `scratch`, valid and writable for its length during the call.
  let read = unsafe {
    nix::libc::syscall(
      nix::libc::SYS_preadv2,
      input.as_raw_fd(),
      &iov as *const nix::libc::iovec,
      1,
      low,
      high,
      nix::libc::RWF_NOWAIT,
    )
  };
  read >= 0 && read as usize == scratch.len()
}

/// Sends `bytes` without waiting, telling the kernel more follows (`MSG_MORE`), so that a
/// response's head and the body `sendfile` puts behind it leave as one segment.
pub(crate) fn send_more(out: BorrowedFd<'_>, bytes: &[u8]) -> Result<usize, Errno> {
  use nix::sys::socket::{send, MsgFlags};
  // nix names no MSG_MORE; the bit is the kernel's.
  let flags = MsgFlags::from_bits_retain(nix::libc::MSG_MORE)
    | MsgFlags::MSG_DONTWAIT
    | MsgFlags::MSG_NOSIGNAL;
  send(std::os::fd::AsRawFd::as_raw_fd(&out), bytes, flags)
}
