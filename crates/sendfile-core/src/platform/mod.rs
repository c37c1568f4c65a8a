//! The one place where operating systems differ. Each module exports
//! `sendfile(out, input, offset, count) -> Result<usize, Errno>` with Linux semantics:
//! `offset: None` reads from and advances the file position, `Some` reads from there and
//! advances only the given offset; `Ok(0)` means end of file; bytes that went out are always
//! reported as `Ok`, even when the call also failed (the error recurs on the next call).

// The OS groups are named in build.rs (cfg_aliases).
#[cfg(linux_like)]
mod linux;
#[cfg(linux_like)]
pub(crate) use linux::sendfile;

#[cfg(bsd_like)]
mod bsd;
#[cfg(bsd_like)]
pub(crate) use bsd::sendfile;

#[cfg(not(any(linux_like, bsd_like)))]
mod portable;
#[cfg(not(any(linux_like, bsd_like)))]
pub(crate) use portable::sendfile;

/// `copy_file_range(2)`: Linux 4.5+ and FreeBSD 13+; elsewhere `ENOSYS`, which makes callers
/// move on to the next method.
#[cfg(has_copy_file_range)]
pub(crate) fn copy_file_range(
  source: std::os::fd::BorrowedFd<'_>,
  source_offset: &mut i64,
  destination: std::os::fd::BorrowedFd<'_>,
  destination_offset: &mut i64,
  count: usize,
) -> Result<usize, nix::errno::Errno> {
  nix::fcntl::copy_file_range(
    source,
    Some(source_offset),
    destination,
    Some(destination_offset),
    count,
  )
}

#[cfg(linux_like)]
pub(crate) use linux::{open_without_symlinks, range_is_cached, send_more, DIRECTORY_WALK_FLAGS};

/// Only Linux can ask whether a read would wait for the disk (`RWF_NOWAIT`): elsewhere no
/// range counts as cached, so nothing is sent from the event loop.
#[cfg(not(linux_like))]
pub(crate) fn range_is_cached(
  _input: std::os::fd::BorrowedFd<'_>,
  _offset: u64,
  _scratch: &mut [u8],
) -> bool {
  false
}

/// Never called where [`range_is_cached`] is always false.
#[cfg(not(linux_like))]
pub(crate) fn send_more(
  _out: std::os::fd::BorrowedFd<'_>,
  _bytes: &[u8],
) -> Result<usize, nix::errno::Errno> {
  Err(nix::errno::Errno::ENOSYS)
}

/// Without `O_PATH`, a directory on a walk is opened for reading.
#[cfg(not(linux_like))]
pub(crate) const DIRECTORY_WALK_FLAGS: nix::fcntl::OFlag = nix::fcntl::OFlag::O_RDONLY;

/// Only Linux resolves a whole path beneath a directory in one call (`openat2`); elsewhere the
/// caller walks the path itself.
#[cfg(not(linux_like))]
pub(crate) fn open_without_symlinks(
  _root: std::os::fd::BorrowedFd<'_>,
  _path: &std::ffi::OsStr,
  _flags: nix::fcntl::OFlag,
) -> Option<Result<std::os::fd::OwnedFd, nix::errno::Errno>> {
  None
}

#[cfg(not(has_copy_file_range))]
pub(crate) fn copy_file_range(
  _source: std::os::fd::BorrowedFd<'_>,
  _source_offset: &mut i64,
  _destination: std::os::fd::BorrowedFd<'_>,
  _destination_offset: &mut i64,
  _count: usize,
) -> Result<usize, nix::errno::Errno> {
  Err(nix::errno::Errno::ENOSYS)
}

/// The one copy through a buffer: for destinations that the platform's `sendfile` refuses (on
/// BSD and macOS, anything that is not a stream socket), and for file copies that no in-kernel
/// method serves. Not zero-copy, but the same semantics, so callers never see the difference.
#[allow(dead_code)]
pub(crate) mod bounce {
  use crate::COPY_BUFFER_SIZE;
  use nix::errno::Errno;
  use std::cell::RefCell;
  use std::os::fd::BorrowedFd;

  thread_local! {
    /// One buffer per thread, reused: allocating one per step would cost an mmap and a munmap.
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
  }

  /// Reads at most `count` bytes from `input` (at `*read_at`, or at and past its file position)
  /// and writes them to `out` (at `*write_at`, or at its position). Returns the bytes written,
  /// 0 at end of file. Bytes read but not written are read again by the next call: an offset
  /// advances only by what was written, a file position is stepped back.
  pub(crate) fn copy(
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    read_at: Option<&mut i64>,
    write_at: Option<&mut i64>,
    count: usize,
  ) -> Result<usize, Errno> {
    BUFFER.with_borrow_mut(|buffer| {
      let size = count.min(COPY_BUFFER_SIZE);
      if buffer.len() < size {
        buffer.resize(size, 0);
      }
      let read = match read_at.as_deref() {
        Some(&at) => nix::sys::uio::pread(input, &mut buffer[..size], at)?,
        None => nix::unistd::read(input, &mut buffer[..size])?,
      };
      if read == 0 {
        return Ok(0);
      }
      let written = match write_at.as_deref() {
        Some(&at) => nix::sys::uio::pwrite(out, &buffer[..read], at),
        None => nix::unistd::write(out, &buffer[..read]),
      };
      let written = match written {
        Ok(written) => written,
        Err(error) => {
          rewind_unsent(input, read_at.is_none(), read)?;
          return Err(error);
        }
      };
      if written < read {
        rewind_unsent(input, read_at.is_none(), read - written)?;
      }
      if let Some(at) = read_at {
        *at += written as i64;
      }
      if let Some(at) = write_at {
        *at += written as i64;
      }
      Ok(written)
    })
  }

  /// Bytes read but not written must be read again next time: step the file position back.
  fn rewind_unsent(input: BorrowedFd<'_>, used_position: bool, unsent: usize) -> Result<(), Errno> {
    if used_position {
      nix::unistd::lseek(input, -(unsent as i64), nix::unistd::Whence::SeekCur)?;
    }
    Ok(())
  }
}
