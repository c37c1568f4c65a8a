//! File-to-file copies: `copy_file_range(2)` where the kernel has it (in-kernel, and a reflink
//! on filesystems that share extents), then `sendfile(2)`, then `pread`/`pwrite`, each tried
//! only when the one before refuses the pair of files before copying a byte.

use crate::{platform, ranges_overlap, Outcome, Step, MAX_SENDFILE_CHUNK};
use nix::errno::Errno;
use nix::sys::stat::fstat;
use std::os::fd::BorrowedFd;

/// Which mechanism a [`FileCopy`] uses; it only ever moves down this list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyMethod {
  CopyFileRange,
  Sendfile,
  ReadWrite,
}

const READ_WRITE_BUFFER: usize = 1024 * 1024;

/// A copy of `count` bytes (`None`: to end of file) from `source_offset` in one file to
/// `destination_offset` in another. Neither file position changes, unless the caller allows
/// the destination's to (then `sendfile`, which writes at the file position, may be used).
#[derive(Debug)]
pub struct FileCopy {
  source_offset: i64,
  destination_offset: i64,
  remaining: Option<u64>,
  bytes_copied: u64,
  method: CopyMethod,
  may_move_destination_position: bool,
  inspected: bool,
  buffer: Vec<u8>,
}

/// Errors that mean "this mechanism cannot copy between these two files", not "the copy failed".
fn refuses_pair(error: Errno) -> bool {
  matches!(
    error,
    Errno::EXDEV
      | Errno::ENOSYS
      | Errno::EOPNOTSUPP
      | Errno::EINVAL
      | Errno::EBADF
      | Errno::ESPIPE
      | Errno::ETXTBSY
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
      method: CopyMethod::CopyFileRange,
      may_move_destination_position,
      inspected: false,
      buffer: Vec::new(),
    }
  }

  pub fn bytes_copied(&self) -> u64 {
    self.bytes_copied
  }

  pub fn method(&self) -> CopyMethod {
    self.method
  }

  /// Copies at most `max_chunk` bytes. `EINTR` is returned, as by [`crate::Transfer::step`].
  pub fn step(
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
        CopyMethod::CopyFileRange => platform::copy_file_range(
          source,
          &mut self.source_offset,
          destination,
          &mut self.destination_offset,
          wanted,
        ),
        CopyMethod::Sendfile => self.sendfile_at_destination_offset(destination, source, wanted),
        CopyMethod::ReadWrite => self.read_write(destination, source, wanted),
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
          if self.bytes_copied == 0
            && refuses_pair(error)
            && self.method != CopyMethod::ReadWrite =>
        {
          self.method = match self.method {
            CopyMethod::CopyFileRange if self.may_move_destination_position => CopyMethod::Sendfile,
            _ => CopyMethod::ReadWrite,
          };
        }
        Err(error) => return Err(error),
      }
    }
  }

  /// Runs the copy to its end; unlike a socket transfer, an error after some bytes is still
  /// reported (with the count), since a half-copied file is not a success.
  pub fn run_blocking(&mut self, destination: BorrowedFd<'_>, source: BorrowedFd<'_>) -> Outcome {
    loop {
      match self.step(destination, source, MAX_SENDFILE_CHUNK) {
        Ok(Step::Sent(_)) | Err(Errno::EINTR) => continue,
        Ok(Step::Finished) => {
          return Outcome {
            bytes_sent: self.bytes_copied,
            error: None,
          }
        }
        Ok(Step::WouldBlock) => {
          return Outcome {
            bytes_sent: self.bytes_copied,
            error: Some(Errno::EAGAIN),
          }
        }
        Err(error) => {
          return Outcome {
            bytes_sent: self.bytes_copied,
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
      self.method = CopyMethod::ReadWrite;
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
    let size = wanted.min(READ_WRITE_BUFFER);
    if self.buffer.len() < size {
      self.buffer.resize(size, 0);
    }
    let read = nix::sys::uio::pread(source, &mut self.buffer[..size], self.source_offset)?;
    let mut written = 0;
    while written < read {
      match nix::sys::uio::pwrite(
        destination,
        &self.buffer[written..read],
        self.destination_offset + written as i64,
      ) {
        Ok(0) => return Err(Errno::EIO),
        Ok(count) => written += count,
        Err(Errno::EINTR) => continue,
        Err(error) => return Err(error),
      }
    }
    self.source_offset += read as i64;
    self.destination_offset += read as i64;
    Ok(read)
  }
}
