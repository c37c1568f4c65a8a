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
