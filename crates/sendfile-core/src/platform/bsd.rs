//! macOS and FreeBSD: `sendfile(in, out, ...)` takes its arguments in the opposite order to
//! Linux, writes only to stream sockets, has no "use the file position" mode, and reports
//! the bytes it sent alongside `EAGAIN`/`EINTR` (sendfile(2) on both systems).

use super::bounce;
use nix::errno::Errno;
use nix::unistd::{lseek, Whence};
use std::os::fd::BorrowedFd;

pub(crate) fn sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  offset: Option<&mut i64>,
  count: usize,
) -> Result<usize, Errno> {
  let start = match offset.as_deref() {
    Some(&at) => at,
    None => lseek(input, 0, Whence::SeekCur)?,
  };
  let (result, sent) = raw_sendfile(out, input, start, count);
  let sent = usize::try_from(sent).unwrap_or(0);
  match result {
    // Not a stream socket: copy through a buffer instead (ENOTSOCK on both; FreeBSD may say EINVAL
    // for a pipe). Nothing went out, so the position is untouched.
    Err(Errno::ENOTSOCK) | Err(Errno::EOPNOTSUPP) | Err(Errno::EINVAL) if sent == 0 => {
      return bounce::copy(out, input, offset, None, count)
    }
    Err(error) if sent == 0 => return Err(error),
    _ => {}
  }
  match offset {
    Some(at) => *at += sent as i64,
    None => {
      lseek(input, start + sent as i64, Whence::SeekSet)?;
    }
  }
  Ok(sent)
}

#[cfg(any(target_os = "macos", target_os = "ios"))]
fn raw_sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  start: i64,
  count: usize,
) -> (Result<(), Errno>, i64) {
  nix::sys::sendfile::sendfile(input, out, start, Some(count as i64), None, None)
}

#[cfg(target_os = "freebsd")]
fn raw_sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  start: i64,
  count: usize,
) -> (Result<(), Errno>, i64) {
  use nix::sys::sendfile::SfFlags;
  nix::sys::sendfile::sendfile(
    input,
    out,
    start,
    Some(count),
    None,
    None,
    SfFlags::empty(),
    0,
  )
}

#[cfg(target_os = "dragonfly")]
fn raw_sendfile(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
  start: i64,
  count: usize,
) -> (Result<(), Errno>, i64) {
  nix::sys::sendfile::sendfile(input, out, start, Some(count), None, None)
}
