//! Zero-copy file transfer through the kernel's `sendfile(2)` family.
//!
//! Everything that touches a syscall or differs between operating systems lives in this crate;
//! the Node.js binding only converts values and schedules work. A transfer is a [`Transfer`]
//! driven one [`Transfer::step`] at a time, so the same loop serves a blocking caller
//! ([`Transfer::run_blocking`]) and an event loop that waits for writability between steps.

mod beneath;
mod copy;
mod inline;
mod interrupt;
mod platform;

pub use beneath::{open_beneath, open_with_stat, Beneath, Symlinks};
pub use copy::{open_for_copy, FileCopy, OpenedFiles};
pub use inline::{send_now, sendable_now, SentNow, INLINE_LIMIT};
pub use interrupt::BlockedCall;

use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub use nix::errno::Errno;
pub use nix::sys::stat::FileStat;

/// The most bytes one `sendfile(2)` call moves on Linux (`MAX_RW_COUNT`, see sendfile(2) NOTES);
/// larger requests are split into calls of at most this size.
pub const MAX_SENDFILE_CHUNK: u64 = 0x7fff_f000;

/// The buffer of every copy that cannot stay in the kernel (the `pread`/`write` fallbacks):
/// large enough that the syscalls cost little next to the copying, small enough to stay in a
/// CPU's L2 cache while it is read and written back out.
pub const COPY_BUFFER_SIZE: usize = 256 * 1024;

/// The mechanism that moved (or moves) a transfer's bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
  /// `sendfile(2)`: zero-copy, from the page cache to the destination.
  Sendfile,
  /// `copy_file_range(2)`: zero-copy between files, a reflink where the filesystem shares extents.
  CopyFileRange,
  /// `pread`/`write` through a buffer: the same bytes, copied through user space.
  ReadWrite,
}

/// Why the kernel cannot move this transfer's bytes, found before the first byte moved: another
/// way (a stream through user space) can serve. Whether to take it is the caller's decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
  /// The kernel answered an error that means "not with this call, not for these files"
  /// (`EINVAL`, `ENOSYS`, `EOPNOTSUPP`): see [`is_refusal`].
  Unsupported(Errno),
  /// The source reports size 0 and yet has bytes (procfs, sysfs): the in-kernel copies see an
  /// empty file, only `read(2)` finds its end.
  SizeUnknown,
}

/// Errors with which a zero-copy call refuses a pair of files before moving a byte, rather
/// than failing: a pipe or a file system the call does not support, a kernel without it.
pub fn is_refusal(error: Errno) -> bool {
  error == Errno::EINVAL
    || error == Errno::ENOSYS
    || error == Errno::EOPNOTSUPP
    || error == Errno::ENOTSUP
}

/// What a driver needs from a transfer or a copy: one bounded step at a time.
pub trait Stepwise {
  /// Moves at most `max_chunk` bytes. `EINTR` is returned, not retried, so that a driver can
  /// look for a cancel before it calls again (see [`BlockedCall`]); nothing moved then.
  fn step(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> Result<Step, Errno>;
  /// Bytes moved so far.
  fn bytes_moved(&self) -> u64;
  /// The mechanism in use.
  fn method(&self) -> Method;
  /// Why the kernel cannot serve, when it refused before the first byte.
  fn refusal(&self) -> Option<Refusal>;
}

/// Where a transfer reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
  /// Read from the source's file position and advance it, like `read(2)`.
  Current,
  /// Read from this byte offset and leave the source's file position alone, like `pread(2)`.
  At(u64),
}

/// What one step of a transfer did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
  /// This many bytes (more than zero) went out.
  Sent(u64),
  /// The requested range is complete, or the source is at end of file.
  Finished,
  /// The destination is non-blocking and full (`EAGAIN`); nothing went out.
  WouldBlock,
}

/// The result of a transfer that may stop early: the bytes that moved, and why it stopped if
/// it stopped before the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
  pub bytes: u64,
  pub error: Option<Errno>,
}

/// One transfer of a byte range from a file to a socket, pipe or file.
#[derive(Clone, Debug)]
pub struct Transfer {
  /// The next offset to read, or `None` to use (and advance) the source's file position.
  offset: Option<i64>,
  /// Bytes still wanted, or `None` for "until end of file".
  remaining: Option<u64>,
  bytes_sent: u64,
  /// Whether the first step has looked for a file sent into itself.
  inspected: bool,
  refusal: Option<Refusal>,
}

impl Transfer {
  /// A transfer of `count` bytes from `position`, or (`None`) until end of file. The public
  /// APIs spell "until end of file" as count 0, like the classic `sendfile(sock, file, 0, 0)`
  /// (the BSD convention, applied on every OS); they map it to `None` at their edge.
  ///
  /// Offsets above `i64::MAX` cannot name a byte of any file; they are clamped there so the
  /// kernel answers them the way it answers any offset past end of file.
  pub fn new(position: Position, count: Option<u64>) -> Self {
    let offset = match position {
      Position::Current => None,
      Position::At(offset) => Some(i64::try_from(offset).unwrap_or(i64::MAX)),
    };
    Transfer {
      offset,
      remaining: count,
      bytes_sent: 0,
      inspected: false,
      refusal: None,
    }
  }

  /// Bytes sent so far.
  pub fn bytes_sent(&self) -> u64 {
    self.bytes_sent
  }

  /// Whether a source that looks empty only says so: it reports size 0 (procfs, sysfs), yet
  /// `read(2)` finds a byte. Asked only when the first call sent nothing.
  fn size_is_unknown(&self, input: BorrowedFd<'_>) -> bool {
    use nix::sys::stat::{fstat, SFlag};
    let Ok(stat) = fstat(input) else {
      return false;
    };
    let regular = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
    if !regular || stat.st_size != 0 {
      return false;
    }
    let mut probe = [0u8; 1];
    let read = match self.offset {
      Some(offset) => nix::sys::uio::pread(input, &mut probe, offset),
      // Looking at the next byte through the file position would move it: pread at it instead.
      None => nix::unistd::lseek(input, 0, nix::unistd::Whence::SeekCur)
        .and_then(|position| nix::sys::uio::pread(input, &mut probe, position)),
    };
    read.is_ok_and(|read| read > 0)
  }

  /// A regular file sent into itself: "until end of file" while appending never ends (the file
  /// grows as fast as it is read, until `EFBIG` or `ENOSPC`), and a read range that overlaps the
  /// write range reads bytes this transfer has just written. Like `copy_file_range(2)`, refuse
  /// overlapping ranges with `EINVAL`; otherwise stop at the end of file as it was when the
  /// transfer started.
  ///
  /// Asked only where it can matter without costing the hot path an `fstat` per call: a
  /// transfer until end of file (the one that would never end), or one fd on both sides. Two
  /// fds on one file with an explicit count end after that count, as the kernel copies them.
  fn bound_sending_into_itself(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
  ) -> Result<(), Errno> {
    use std::os::fd::AsRawFd;
    if self.remaining.is_some() && out.as_raw_fd() != input.as_raw_fd() {
      return Ok(());
    }
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use nix::unistd::{lseek, Whence};

    let Some(file) = same_regular_file(out, input)? else {
      return Ok(());
    };
    let flags = OFlag::from_bits_truncate(fcntl(out, FcntlArg::F_GETFL)?);
    if flags & OFlag::O_ACCMODE == OFlag::O_RDONLY {
      // Not a destination at all: the kernel's EBADF says so better than EINVAL would.
      return Ok(());
    }
    let read_start = match self.offset {
      Some(offset) => offset,
      None => lseek(input, 0, Whence::SeekCur)?,
    };
    let length = self
      .remaining
      .unwrap_or(u64::MAX)
      .min((file.st_size - read_start).max(0) as u64);
    let write_start = if flags.contains(OFlag::O_APPEND) {
      file.st_size
    } else {
      lseek(out, 0, Whence::SeekCur)?
    };
    if length > 0 && ranges_overlap(read_start as u64, write_start as u64, length) {
      return Err(Errno::EINVAL);
    }
    self.remaining = Some(length);
    Ok(())
  }

  /// Linux refuses offsets near the filesystem's size limit (`EOVERFLOW`) or whose end would
  /// overflow `loff_t` (`EINVAL`) instead of reading nothing; an offset past the end of the
  /// file reads nothing, as `pread(2)` does, whatever its size.
  fn offset_is_past_end(&self, input: BorrowedFd<'_>) -> bool {
    let Some(offset) = self.offset else {
      return false;
    };
    nix::sys::stat::fstat(input).is_ok_and(|stat| offset >= stat.st_size)
  }

  /// Runs the transfer to its end on the calling thread, with `write(2)` semantics for what
  /// stops it early: when some bytes went out before `EAGAIN` (a full non-blocking destination)
  /// or another error, the outcome is that short count and the error recurs on the next call;
  /// only an error before the first byte is reported as an error.
  pub fn run_blocking(&mut self, out: BorrowedFd<'_>, input: BorrowedFd<'_>) -> Outcome {
    let started_at = self.bytes_sent;
    let error = loop {
      match self.step(out, input, MAX_SENDFILE_CHUNK) {
        Ok(Step::Sent(_)) | Err(Errno::EINTR) => continue,
        Ok(Step::Finished) => break None,
        Ok(Step::WouldBlock) => break Some(Errno::EAGAIN),
        Err(error) => break Some(error),
      }
    };
    let bytes = self.bytes_sent - started_at;
    Outcome {
      bytes,
      error: if bytes > 0 { None } else { error },
    }
  }
}

impl Stepwise for Transfer {
  /// One `sendfile(2)` call of at most `max_chunk` bytes (and at most [`MAX_SENDFILE_CHUNK`]).
  /// `EAGAIN` becomes [`Step::WouldBlock`]; `EINTR` is returned (see [`Stepwise::step`]).
  fn step(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> Result<Step, Errno> {
    if !self.inspected {
      self.inspected = true;
      self.bound_sending_into_itself(out, input)?;
    }
    let wanted = self
      .remaining
      .unwrap_or(u64::MAX)
      .min(max_chunk.max(1))
      .min(MAX_SENDFILE_CHUNK);
    if wanted == 0 {
      return Ok(Step::Finished);
    }
    // `wanted` is at most MAX_SENDFILE_CHUNK, so it fits usize on every target.
    match platform::sendfile(out, input, self.offset.as_mut(), wanted as usize) {
      Ok(0) => {
        if self.bytes_sent == 0 && self.size_is_unknown(input) {
          self.refusal = Some(Refusal::SizeUnknown);
        }
        Ok(Step::Finished)
      }
      Ok(sent) => {
        let sent = sent as u64;
        self.bytes_sent += sent;
        if let Some(remaining) = self.remaining.as_mut() {
          *remaining = remaining.saturating_sub(sent);
        }
        Ok(Step::Sent(sent))
      }
      Err(Errno::EAGAIN) => Ok(Step::WouldBlock),
      Err(error) => {
        let first = self.bytes_sent == 0;
        if first && matches!(error, Errno::EINVAL) && self.size_is_unknown(input) {
          // procfs and sysfs files cannot be spliced at all, and report size 0.
          self.refusal = Some(Refusal::SizeUnknown);
          return Err(error);
        }
        if matches!(error, Errno::EINVAL | Errno::EOVERFLOW) && self.offset_is_past_end(input) {
          return Ok(Step::Finished);
        }
        if first && is_refusal(error) {
          self.refusal = Some(Refusal::Unsupported(error));
        }
        Err(error)
      }
    }
  }
  fn bytes_moved(&self) -> u64 {
    self.bytes_sent
  }
  fn method(&self) -> Method {
    Method::Sendfile
  }
  fn refusal(&self) -> Option<Refusal> {
    self.refusal
  }
}

/// Borrows a descriptor number handed in from outside Rust.
///
/// Negative numbers are answered with `EBADF` here, because `BorrowedFd` cannot hold `-1`;
/// any other closed number is answered with `EBADF` by the kernel on first use.
///
/// # Safety
///
/// `fd` must be open for the whole lifetime `'fd` and not be closed by anyone while the borrow
/// is used, or be closed already (then every syscall on it fails with `EBADF`). The caller
/// chooses `'fd`: keep it to the call that received the number.
pub unsafe fn borrow_raw_fd<'fd>(fd: RawFd) -> Result<BorrowedFd<'fd>, Errno> {
  if fd < 0 {
    return Err(Errno::EBADF);
  }
  // SAFETY: the number is not -1, and the caller vouches for its lifetime.
  Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Private, close-on-exec duplicates of a transfer's two fds, so that a transfer outliving the
/// caller's synchronous call keeps writing to the same open files even if the caller's numbers
/// are closed and handed to something else meanwhile.
///
/// Both duplicates are numbered above both of the caller's numbers (`F_DUPFD_CLOEXEC`, see
/// fcntl(2)): with a plain dup(2), the first duplicate takes the lowest free number, which is
/// the second fd's number when the caller has just closed it, and the second "duplicate" then
/// copies the first file: a transfer from a closed fd would copy the output into itself.
///
/// # Safety
///
/// As for [`borrow_raw_fd`], for the duration of this call only.
pub unsafe fn duplicate_pair(out: RawFd, input: RawFd) -> Result<(OwnedFd, OwnedFd), Errno> {
  let above = out.max(input).checked_add(1).ok_or(Errno::EBADF)?;
  // SAFETY: the caller vouches for both numbers for the length of this call.
  let duplicates = unsafe { (duplicate_above(out, above), duplicate_above(input, above)) };
  match duplicates {
    (Ok(out), Ok(input)) => Ok((out, input)),
    // A closed number is EBADF, whatever else failed: a closed number past the open-file limit
    // makes `above` unusable for the other one too (EMFILE), but the cause is the closed one.
    (Err(first), Err(second)) if first == Errno::EBADF || second == Errno::EBADF => {
      Err(Errno::EBADF)
    }
    (Err(error), _) | (_, Err(error)) => Err(error),
  }
}

/// A private, close-on-exec duplicate of one fd, numbered above it: for work that outlives the
/// caller's synchronous call (see [`duplicate_pair`]).
///
/// # Safety
///
/// As for [`borrow_raw_fd`], for the duration of this call only.
pub unsafe fn duplicate(fd: RawFd) -> Result<OwnedFd, Errno> {
  let above = fd.checked_add(1).ok_or(Errno::EBADF)?;
  // SAFETY: the caller vouches for the number for the length of this call.
  unsafe { duplicate_above(fd, above) }
}

/// # Safety
///
/// As for [`borrow_raw_fd`], for the duration of this call only.
unsafe fn duplicate_above(fd: RawFd, lowest: RawFd) -> Result<OwnedFd, Errno> {
  use nix::fcntl::{fcntl, FcntlArg};
  // SAFETY: the caller vouches for the number for the length of this call.
  let borrowed = unsafe { borrow_raw_fd(fd) }?;
  match fcntl(borrowed, FcntlArg::F_DUPFD_CLOEXEC(lowest)) {
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
    Ok(duplicate) => Ok(unsafe { OwnedFd::from_raw_fd(duplicate) }),
    // `lowest` is at or above RLIMIT_NOFILE: as far as the caller can tell, no fd is free.
    Err(Errno::EINVAL) => Err(Errno::EMFILE),
    Err(error) => Err(error),
  }
}

/// The stat of `out` when `out` and `input` are the same regular file, else `None`.
pub(crate) fn same_regular_file(
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
) -> Result<Option<nix::sys::stat::FileStat>, Errno> {
  use nix::sys::stat::{fstat, SFlag};
  let out_stat = fstat(out)?;
  if SFlag::from_bits_truncate(out_stat.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
    return Ok(None);
  }
  let input_stat = fstat(input)?;
  let same = (out_stat.st_dev, out_stat.st_ino) == (input_stat.st_dev, input_stat.st_ino);
  Ok(same.then_some(input_stat))
}

/// Whether `[a, a + length)` and `[b, b + length)` share a byte.
pub(crate) fn ranges_overlap(a: u64, b: u64, length: u64) -> bool {
  a < b.saturating_add(length) && b < a.saturating_add(length)
}

/// How a caller should wait on a destination between steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitStrategy {
  /// A non-blocking socket or pipe: `sendfile` answers `EAGAIN` when it is full, and readiness
  /// can be awaited with epoll/kqueue.
  Readiness,
  /// Anything else (a regular file, a blocking socket): each call blocks until it is done,
  /// so it belongs on a thread that may block.
  Blocking,
}

/// Chooses how to wait on `out`. Regular files cannot be polled (epoll_ctl answers `EPERM`),
/// and a blocking socket never answers `EAGAIN`; both are driven on a blocking thread.
pub fn wait_strategy(out: impl AsFd) -> Result<WaitStrategy, Errno> {
  use nix::fcntl::{fcntl, FcntlArg, OFlag};
  use nix::sys::stat::{fstat, SFlag};

  let out = out.as_fd();
  let kind = SFlag::from_bits_truncate(fstat(out)?.st_mode) & SFlag::S_IFMT;
  let pollable = kind == SFlag::S_IFSOCK || kind == SFlag::S_IFIFO;
  let non_blocking =
    OFlag::from_bits_truncate(fcntl(out, FcntlArg::F_GETFL)?).contains(OFlag::O_NONBLOCK);
  Ok(if pollable && non_blocking {
    WaitStrategy::Readiness
  } else {
    WaitStrategy::Blocking
  })
}

#[cfg(test)]
mod tests;
