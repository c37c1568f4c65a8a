//! File-to-file copies: `copy_file_range(2)` where the kernel has it (in-kernel, and a reflink
//! on filesystems that share extents), then `sendfile(2)`, then `pread`/`pwrite`, each tried
//! only when the one before refuses the pair of files before copying a byte.

use crate::{
  is_refusal, platform, ranges_overlap, Method, Outcome, Refusal, Step, Stepwise,
  MAX_SENDFILE_CHUNK,
};
use nix::errno::Errno;
use nix::fcntl::{fcntl, open, FcntlArg, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::ftruncate;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

/// A copy of `count` bytes (`None`: to end of file) from `source_offset` in one file to
/// `destination_offset` in another. Neither file position changes, unless the caller allows
/// the destination's to (then `sendfile`, which writes at the file position, may be used).
#[derive(Debug)]
pub struct FileCopy {
  source_offset: i64,
  destination_offset: i64,
  remaining: Option<u64>,
  bytes_copied: u64,
  /// `CopyFileRange`, then `Sendfile`, then `ReadWrite`: it only ever moves down this list.
  method: Method,
  may_move_destination_position: bool,
  inspected: bool,
}

/// Errors that mean "this mechanism cannot copy between these two files", not "the copy
/// failed": every refusal, and what `copy_file_range(2)` adds (across file systems before
/// Linux 5.3, files it cannot seek, swap files, an `O_APPEND` destination).
fn refuses_pair(error: Errno) -> bool {
  is_refusal(error)
    || matches!(
      error,
      Errno::EXDEV | Errno::EBADF | Errno::ESPIPE | Errno::ETXTBSY
    )
}

impl FileCopy {
  pub fn new(
    source_offset: u64,
    destination_offset: u64,
    count: Option<u64>,
    may_move_destination_position: bool,
  ) -> Self {
    FileCopy {
      source_offset: i64::try_from(source_offset).unwrap_or(i64::MAX),
      destination_offset: i64::try_from(destination_offset).unwrap_or(i64::MAX),
      remaining: count,
      bytes_copied: 0,
      method: Method::CopyFileRange,
      may_move_destination_position,
      inspected: false,
    }
  }

  pub fn bytes_copied(&self) -> u64 {
    self.bytes_copied
  }

  pub fn method(&self) -> Method {
    self.method
  }

  /// Runs the copy to its end; unlike a socket transfer, an error after some bytes is still
  /// reported (with the count), since a half-copied file is not a success.
  pub fn run_blocking(&mut self, destination: BorrowedFd<'_>, source: BorrowedFd<'_>) -> Outcome {
    loop {
      match self.step(destination, source, MAX_SENDFILE_CHUNK) {
        Ok(Step::Sent(_)) | Err(Errno::EINTR) => continue,
        Ok(Step::Finished) => {
          return Outcome {
            bytes: self.bytes_copied,
            error: None,
          }
        }
        Ok(Step::WouldBlock) => {
          return Outcome {
            bytes: self.bytes_copied,
            error: Some(Errno::EAGAIN),
          }
        }
        Err(error) => {
          return Outcome {
            bytes: self.bytes_copied,
            error: Some(error),
          }
        }
      }
    }
  }

  /// A first look at both files before any byte moves.
  ///
  /// A source that reports size 0 may still have content (procfs, sysfs): the in-kernel
  /// methods copy nothing from those, only `read(2)` finds out. Copying a file onto itself:
  /// the same range is already in place (nothing to do, nothing to corrupt), and overlapping
  /// ranges would read bytes this copy has just overwritten.
  fn inspect(
    &mut self,
    destination: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
  ) -> Result<Option<Step>, Errno> {
    let (source_stat, destination_stat) = (fstat(source)?, fstat(destination)?);
    if source_stat.st_size == 0 {
      self.method = Method::ReadWrite;
    }
    if (source_stat.st_dev, source_stat.st_ino)
      != (destination_stat.st_dev, destination_stat.st_ino)
    {
      return Ok(None);
    }
    let available = (source_stat.st_size - self.source_offset).max(0) as u64;
    let length = self
      .remaining
      .map_or(available, |remaining| remaining.min(available));
    if self.source_offset == self.destination_offset {
      self.bytes_copied = length;
      self.remaining = Some(0);
      return Ok(Some(if length > 0 {
        Step::Sent(length)
      } else {
        Step::Finished
      }));
    }
    let overlaps = ranges_overlap(
      self.source_offset as u64,
      self.destination_offset as u64,
      length,
    );
    if overlaps && length > 0 {
      return Err(Errno::EINVAL);
    }
    Ok(None)
  }

  fn sendfile_at_destination_offset(
    &mut self,
    destination: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
    wanted: usize,
  ) -> Result<usize, Errno> {
    // sendfile(2) writes at the destination's file position; the caller allowed us to move it.
    nix::unistd::lseek(
      destination,
      self.destination_offset,
      nix::unistd::Whence::SeekSet,
    )?;
    let copied = platform::sendfile(destination, source, Some(&mut self.source_offset), wanted)?;
    self.destination_offset += copied as i64;
    Ok(copied)
  }

  fn read_write(
    &mut self,
    destination: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
    wanted: usize,
  ) -> Result<usize, Errno> {
    platform::bounce::copy(
      destination,
      source,
      Some(&mut self.source_offset),
      Some(&mut self.destination_offset),
      wanted,
    )
  }
}

impl Stepwise for FileCopy {
  /// Copies at most `max_chunk` bytes; `EINTR` is returned (see [`Stepwise::step`]).
  fn step(
    &mut self,
    destination: BorrowedFd<'_>,
    source: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> Result<Step, Errno> {
    if !self.inspected {
      self.inspected = true;
      if let Some(step) = self.inspect(destination, source)? {
        return Ok(step);
      }
    }
    let wanted = self
      .remaining
      .unwrap_or(u64::MAX)
      .min(max_chunk.max(1))
      .min(MAX_SENDFILE_CHUNK) as usize;
    if wanted == 0 {
      return Ok(Step::Finished);
    }
    loop {
      let result = match self.method {
        Method::CopyFileRange => platform::copy_file_range(
          source,
          &mut self.source_offset,
          destination,
          &mut self.destination_offset,
          wanted,
        ),
        Method::Sendfile => self.sendfile_at_destination_offset(destination, source, wanted),
        Method::ReadWrite => self.read_write(destination, source, wanted),
      };
      match result {
        Ok(0) => return Ok(Step::Finished),
        Ok(copied) => {
          self.bytes_copied += copied as u64;
          if let Some(remaining) = self.remaining.as_mut() {
            *remaining = remaining.saturating_sub(copied as u64);
          }
          return Ok(Step::Sent(copied as u64));
        }
        Err(error)
          if self.bytes_copied == 0 && refuses_pair(error) && self.method != Method::ReadWrite =>
        {
          self.method = match self.method {
            Method::CopyFileRange if self.may_move_destination_position => Method::Sendfile,
            _ => Method::ReadWrite,
          };
        }
        Err(error) => return Err(error),
      }
    }
  }
  fn bytes_moved(&self) -> u64 {
    self.bytes_copied
  }
  fn method(&self) -> Method {
    self.method
  }
  /// A copy never refuses: it moves down its methods to `pread`/`pwrite`, which serve any pair.
  fn refusal(&self) -> Option<Refusal> {
    None
  }
}

/// A copy's two files, opened by path.
pub struct OpenedFiles {
  pub source: OwnedFd,
  pub destination: OwnedFd,
  /// The source's size when it was opened (0 for procfs files, whose size is unknown).
  pub source_size: u64,
}

/// Opens a copy's two files by path as libuv's `uv_fs_copyfile` does, in one go on the
/// calling thread: the source read-only, the destination created (with the source's
/// permissions, whatever the umask) or opened without `O_TRUNC`, compared with the source by
/// device and inode, and only then truncated. Between a check of the path and an open that
/// truncates, the path can become a link to the source, which would be cut to nothing; a file
/// opened as itself is never truncated.
///
/// The source is opened `O_NONBLOCK` (a FIFO must not block the open until a writer comes),
/// then made blocking again: the fd is ours alone.
pub fn open_for_copy(
  source: &Path,
  destination: &Path,
  exclusive: bool,
) -> Result<OpenedFiles, Errno> {
  let read_only = OFlag::O_RDONLY | OFlag::O_CLOEXEC;
  let source_fd = open(source, read_only | OFlag::O_NONBLOCK, Mode::empty())?;
  fcntl(&source_fd, FcntlArg::F_SETFL(OFlag::empty()))?;
  let source_stat = fstat(&source_fd)?;
  if SFlag::from_bits_truncate(source_stat.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
    return Err(Errno::EISDIR);
  }
  let permissions = Mode::from_bits_truncate((source_stat.st_mode & 0o7777) as _);
  let mut create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_CLOEXEC;
  if exclusive {
    create |= OFlag::O_EXCL;
  }
  let destination_fd = open(destination, create, permissions)?;
  let destination_stat = fstat(&destination_fd)?;
  let itself =
    (destination_stat.st_dev, destination_stat.st_ino) == (source_stat.st_dev, source_stat.st_ino);
  if !itself {
    if destination_stat.st_size > 0 {
      ftruncate(&destination_fd, 0)?;
    }
    // Like fs.copyFile; some file systems refuse chmod, and the copy is still good.
    let _ = fchmod(&destination_fd, permissions);
  }
  Ok(OpenedFiles {
    source: source_fd,
    destination: destination_fd,
    source_size: source_stat.st_size.max(0) as u64,
  })
}
