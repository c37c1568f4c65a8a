//! Systems without a `sendfile` that `nix` wraps: the same semantics through a buffer.

use super::bounce;
use nix::errno::Errno;
use std::os::fd::BorrowedFd;

pub(crate) fn sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  offset: Option<&mut i64>,
  count: usize,
) -> Result<usize, Errno> {
  bounce::copy(out, input, offset, None, count)
}
