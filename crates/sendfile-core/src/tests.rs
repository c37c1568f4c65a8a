use super::*;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{lseek, pipe, Whence};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::PathBuf;

/// A file in a fresh temporary directory, removed when dropped.
struct Fixture {
  path: PathBuf,
  file: File,
}

impl Fixture {
  fn new(name: &str, contents: &[u8]) -> Fixture {
    let dir = std::env::temp_dir().join(format!("sendfile-core-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("source");
    std::fs::write(&path, contents).expect("write fixture");
    let file = File::open(&path).expect("open fixture");
    Fixture { path, file }
  }
}

impl Drop for Fixture {
  fn drop(&mut self) {
    if let Some(dir) = self.path.parent() {
      let _ = std::fs::remove_dir_all(dir);
    }
  }
}

fn pattern(len: usize) -> Vec<u8> {
  (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn drain(mut reader: File) -> Vec<u8> {
  let mut received = Vec::new();
  reader.read_to_end(&mut received).expect("read pipe");
  received
}

#[test]
fn whole_file_to_a_pipe_with_count_zero() {
  let contents = pattern(100_000);
  let source = Fixture::new("whole", &contents);
  let (reader, writer) = pipe().expect("pipe");
  let reader_thread = std::thread::spawn(move || drain(File::from(reader)));
  let outcome =
    Transfer::new(Position::At(0), None).run_blocking(writer.as_fd(), source.file.as_fd());
  drop(writer);
  assert_eq!(
    outcome,
    Outcome {
      bytes: 100_000,
      error: None
    }
  );
  assert_eq!(reader_thread.join().expect("reader"), contents);
}

#[test]
fn explicit_offset_leaves_the_file_position_alone() {
  let contents = pattern(10_000);
  let source = Fixture::new("offset", &contents);
  let (reader, writer) = pipe().expect("pipe");
  let outcome =
    Transfer::new(Position::At(1_000), Some(500)).run_blocking(writer.as_fd(), source.file.as_fd());
  drop(writer);
  assert_eq!(outcome.bytes, 500);
  assert_eq!(drain(File::from(reader)), contents[1_000..1_500]);
  assert_eq!(lseek(source.file.as_fd(), 0, Whence::SeekCur), Ok(0));
}

#[test]
fn current_position_is_read_and_advanced() {
  let contents = pattern(10_000);
  let source = Fixture::new("current", &contents);
  lseek(source.file.as_fd(), 2_000, Whence::SeekSet).expect("seek");
  let (reader, writer) = pipe().expect("pipe");
  let outcome =
    Transfer::new(Position::Current, Some(3_000)).run_blocking(writer.as_fd(), source.file.as_fd());
  drop(writer);
  assert_eq!(outcome.bytes, 3_000);
  assert_eq!(drain(File::from(reader)), contents[2_000..5_000]);
  assert_eq!(lseek(source.file.as_fd(), 0, Whence::SeekCur), Ok(5_000));
}

#[test]
fn an_empty_range_sends_nothing_while_none_means_end_of_file() {
  let contents = pattern(5_000);
  let source = Fixture::new("empty-range", &contents);
  let (reader, writer) = pipe().expect("pipe");
  let empty =
    Transfer::new(Position::At(10), Some(0)).run_blocking(writer.as_fd(), source.file.as_fd());
  assert_eq!(
    empty,
    Outcome {
      bytes: 0,
      error: None
    }
  );
  let to_end =
    Transfer::new(Position::At(10), None).run_blocking(writer.as_fd(), source.file.as_fd());
  drop(writer);
  assert_eq!(to_end.bytes, 4_990);
  assert_eq!(drain(File::from(reader)), contents[10..]);
  let mut copy = FileCopy::new(0, 0, Some(0), false);
  let destination = File::create(source.path.with_file_name("empty-copy")).expect("create");
  assert_eq!(
    copy.run_blocking(destination.as_fd(), source.file.as_fd()),
    Outcome {
      bytes: 0,
      error: None
    }
  );
  assert_eq!(destination.metadata().expect("stat").len(), 0);
}

#[test]
fn offsets_at_and_past_end_of_file_send_nothing() {
  let source = Fixture::new("eof", &pattern(64));
  let (_reader, writer) = pipe().expect("pipe");
  for offset in [64, 65, 1 << 40, (1 << 53) - 1, i64::MAX as u64, u64::MAX] {
    let outcome = Transfer::new(Position::At(offset), Some(10))
      .run_blocking(writer.as_fd(), source.file.as_fd());
    assert_eq!(
      outcome,
      Outcome {
        bytes: 0,
        error: None
      },
      "offset {offset}"
    );
  }
}

#[test]
fn a_full_non_blocking_socket_gives_a_short_count_then_eagain() {
  let contents = pattern(8 << 20);
  let source = Fixture::new("nonblocking", &contents);
  let (ours, peer) = socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::SOCK_NONBLOCK,
  )
  .expect("socketpair");
  let mut transfer = Transfer::new(Position::At(0), None);
  let first = transfer.run_blocking(ours.as_fd(), source.file.as_fd());
  assert!(
    first.error.is_none() && first.bytes > 0 && first.bytes < contents.len() as u64,
    "{first:?}"
  );
  let second = transfer.run_blocking(ours.as_fd(), source.file.as_fd());
  assert_eq!(
    second,
    Outcome {
      bytes: 0,
      error: Some(Errno::EAGAIN)
    }
  );
  assert_eq!(
    transfer.step(ours.as_fd(), source.file.as_fd(), 4096),
    Ok(Step::WouldBlock)
  );
  // The fd's flags are never touched.
  let flags = OFlag::from_bits_truncate(fcntl(ours.as_fd(), FcntlArg::F_GETFL).expect("getfl"));
  assert!(flags.contains(OFlag::O_NONBLOCK));
  let mut received = vec![0u8; first.bytes as usize];
  let mut peer = File::from(peer);
  fcntl(peer.as_fd(), FcntlArg::F_SETFL(OFlag::empty())).expect("make peer blocking");
  peer.read_exact(&mut received).expect("read what was sent");
  assert_eq!(received, contents[..first.bytes as usize]);
}

#[test]
fn step_honours_the_chunk_cap_and_reports_bytes() {
  let contents = pattern(10_000);
  let source = Fixture::new("chunk", &contents);
  let (reader, writer) = pipe().expect("pipe");
  let mut transfer = Transfer::new(Position::At(0), None);
  assert_eq!(
    transfer.step(writer.as_fd(), source.file.as_fd(), 4_000),
    Ok(Step::Sent(4_000))
  );
  assert_eq!(
    transfer.step(writer.as_fd(), source.file.as_fd(), 4_000),
    Ok(Step::Sent(4_000))
  );
  assert_eq!(
    transfer.step(writer.as_fd(), source.file.as_fd(), 4_000),
    Ok(Step::Sent(2_000))
  );
  assert_eq!(
    transfer.step(writer.as_fd(), source.file.as_fd(), 4_000),
    Ok(Step::Finished)
  );
  assert_eq!(transfer.bytes_sent(), 10_000);
  drop(writer);
  assert_eq!(drain(File::from(reader)), contents);
}

#[test]
fn file_to_file_past_four_gibibytes() {
  let source = Fixture::new("sparse", b"");
  let marker = b"marker above 2^32";
  let at = (1u64 << 32) + 12_345;
  {
    let mut file = std::fs::OpenOptions::new()
      .write(true)
      .open(&source.path)
      .expect("open for write");
    file.set_len(at + 4096).expect("ftruncate");
    nix::sys::uio::pwrite(file.as_fd(), marker, at as i64).expect("pwrite marker");
    file.flush().expect("flush");
  }
  let destination = source.path.with_file_name("destination");
  let out = File::create(&destination).expect("create destination");
  let outcome =
    Transfer::new(Position::At(at - 10), Some(100)).run_blocking(out.as_fd(), source.file.as_fd());
  assert_eq!(
    outcome,
    Outcome {
      bytes: 100,
      error: None
    }
  );
  let copied = std::fs::read(&destination).expect("read destination");
  assert_eq!(&copied[10..10 + marker.len()], marker);
  assert!(copied[..10].iter().all(|&byte| byte == 0));
}

#[test]
fn errors_before_any_byte_are_reported() {
  let source = Fixture::new("errors", &pattern(10));
  let (reader, writer) = pipe().expect("pipe");
  // SAFETY: -1 is refused before anything borrows it.
  assert_eq!(unsafe { borrow_raw_fd(-1) }.err(), Some(Errno::EBADF));
  // Reading from a pipe: sendfile needs an mmap-able (seekable) source.
  let outcome =
    Transfer::new(Position::At(0), Some(10)).run_blocking(writer.as_fd(), reader.as_fd());
  assert_eq!(outcome.bytes, 0);
  assert!(
    matches!(outcome.error, Some(Errno::EINVAL) | Some(Errno::ESPIPE)),
    "{outcome:?}"
  );
  // A read-only file is no destination.
  let other = Fixture::new("errors-other", &pattern(10));
  let outcome =
    Transfer::new(Position::At(0), Some(10)).run_blocking(other.file.as_fd(), source.file.as_fd());
  assert_eq!(outcome.error, Some(Errno::EBADF));
  // SAFETY: -5 is refused before anything is duplicated.
  assert_eq!(unsafe { duplicate_pair(-5, 0) }.err(), Some(Errno::EBADF));
}

#[test]
fn wait_strategy_tells_sockets_from_files() {
  let source = Fixture::new("strategy", &pattern(10));
  let (ours, _peer) = socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::SOCK_NONBLOCK,
  )
  .expect("socketpair");
  assert_eq!(wait_strategy(&ours), Ok(WaitStrategy::Readiness));
  let (blocking, _peer2) = socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::empty(),
  )
  .expect("socketpair");
  assert_eq!(wait_strategy(&blocking), Ok(WaitStrategy::Blocking));
  assert_eq!(wait_strategy(&source.file), Ok(WaitStrategy::Blocking));
  let raw = std::os::fd::AsRawFd::as_raw_fd(&ours);
  // SAFETY: `ours` is open for the whole call.
  let (copy, _) = unsafe { duplicate_pair(raw, raw) }.expect("dup");
  assert_eq!(wait_strategy(&copy), Ok(WaitStrategy::Readiness));
}

#[test]
fn duplicates_never_take_a_number_the_caller_passed() {
  use std::os::fd::{AsRawFd, IntoRawFd};
  let output = Fixture::new("dup-out", &pattern(10));
  let input = Fixture::new("dup-in", &pattern(10));
  let (out_fd, in_fd) = (output.file.as_raw_fd(), input.file.as_raw_fd());
  // SAFETY: both fixtures are open for the whole call.
  let (out_copy, in_copy) = unsafe { duplicate_pair(out_fd, in_fd) }.expect("dup");
  assert!(out_copy.as_raw_fd() > out_fd.max(in_fd));
  assert!(in_copy.as_raw_fd() > out_fd.max(in_fd));
  // The input's number closed (so it is the lowest free one): EBADF, never a copy of the output.
  let closed = File::open(&input.path).expect("open").into_raw_fd();
  nix::unistd::close(closed).expect("close");
  // SAFETY: `out_fd` is open; `closed` is closed, which answers EBADF.
  assert_eq!(
    unsafe { duplicate_pair(out_fd, closed) }.err(),
    Some(Errno::EBADF)
  );
  // A closed number past the open-file limit is EBADF too, not the EMFILE its height causes.
  // SAFETY: `out_fd` is open; 1 << 30 is past any open-file limit, so closed.
  assert_eq!(
    unsafe { duplicate_pair(out_fd, 1 << 30) }.err(),
    Some(Errno::EBADF)
  );
}

#[test]
fn a_file_sent_into_itself_stops_at_its_old_end_or_is_refused() {
  use std::os::fd::AsFd;
  let contents = pattern(1000);
  let fixture = Fixture::new("itself", &contents);
  // Written at its end through a second open file (sendfile(2) refuses O_APPEND outputs).
  let writer = std::fs::OpenOptions::new()
    .write(true)
    .open(&fixture.path)
    .expect("open for writing");
  lseek(writer.as_fd(), 0, Whence::SeekEnd).expect("seek to end");
  // Until end of file: the end it started with, not the end it keeps making.
  let outcome =
    Transfer::new(Position::At(0), None).run_blocking(writer.as_fd(), fixture.file.as_fd());
  assert_eq!(
    outcome,
    Outcome {
      bytes: 1000,
      error: None
    }
  );
  let doubled = std::fs::read(&fixture.path).expect("read");
  assert_eq!(doubled.len(), 2000);
  assert_eq!(&doubled[1000..], &contents[..]);
  // The same open file, read and written at its one position: the ranges overlap.
  let both = std::fs::OpenOptions::new()
    .read(true)
    .write(true)
    .open(&fixture.path)
    .expect("open rw");
  let outcome = Transfer::new(Position::Current, None).run_blocking(both.as_fd(), both.as_fd());
  assert_eq!(
    outcome,
    Outcome {
      bytes: 0,
      error: Some(Errno::EINVAL)
    }
  );
  let outcome = Transfer::new(Position::At(0), Some(500)).run_blocking(both.as_fd(), both.as_fd());
  assert_eq!(outcome.error, Some(Errno::EINVAL));
  assert_eq!(std::fs::metadata(&fixture.path).expect("stat").len(), 2000);
}

#[test]
fn an_interrupt_ends_a_step_blocked_on_a_full_blocking_pipe() {
  use std::sync::Arc;
  let source = Fixture::new("interrupt", &pattern(4 * 1024 * 1024));
  // Blocking, and nobody reads: the first step fills the pipe, the next one blocks.
  let (_reader, writer) = pipe().expect("pipe");
  let blocked = Arc::new(BlockedCall::new());
  let worker_blocked = Arc::clone(&blocked);
  let worker = std::thread::spawn(move || {
    let mut transfer = Transfer::new(Position::At(0), None);
    loop {
      worker_blocked.enter();
      let step = transfer.step(writer.as_fd(), source.file.as_fd(), MAX_SENDFILE_CHUNK);
      worker_blocked.leave();
      match step {
        Ok(Step::Sent(_)) => continue,
        other => return (other, transfer.bytes_sent()),
      }
    }
  });
  // A signal that lands before the syscall starts is absorbed: keep trying until it returns.
  for _ in 0..5000 {
    if worker.is_finished() {
      break;
    }
    blocked.interrupt();
    std::thread::sleep(std::time::Duration::from_millis(2));
  }
  assert!(worker.is_finished(), "the blocked step never returned");
  let (step, sent) = worker.join().expect("worker");
  assert_eq!(step, Err(Errno::EINTR));
  assert!(sent > 0 && sent < 4 * 1024 * 1024, "{sent}");
}

// procfs is Linux's; elsewhere the pipe case alone would not be worth a second test.
#[cfg(linux_like)]
#[test]
fn refusals_before_the_first_byte_are_named_and_errors_after_it_are_not() {
  // A procfs file reports size 0 and cannot be spliced: the size is unknown, read(2) serves.
  let proc_file = File::open("/proc/self/status").expect("open /proc/self/status");
  let (_reader, writer) = pipe().expect("pipe");
  let mut transfer = Transfer::new(Position::At(0), None);
  let outcome = transfer.run_blocking(writer.as_fd(), proc_file.as_fd());
  assert_eq!(outcome.bytes, 0);
  assert_eq!(transfer.refusal(), Some(Refusal::SizeUnknown));
  // A pipe as the source: the kernel refuses the pair.
  let (source_reader, _source_writer) = pipe().expect("pipe");
  let mut transfer = Transfer::new(Position::Current, Some(10));
  let outcome = transfer.run_blocking(writer.as_fd(), source_reader.as_fd());
  assert_eq!(outcome.error, Some(Errno::EINVAL));
  assert_eq!(
    transfer.refusal(),
    Some(Refusal::Unsupported(Errno::EINVAL))
  );
  // A truly empty file is no refusal: there is nothing to send.
  let empty = Fixture::new("empty", &[]);
  let mut transfer = Transfer::new(Position::At(0), None);
  let outcome = transfer.run_blocking(writer.as_fd(), empty.file.as_fd());
  assert_eq!(
    outcome,
    Outcome {
      bytes: 0,
      error: None
    }
  );
  assert_eq!(transfer.refusal(), None);
  assert!(is_refusal(Errno::ENOSYS) && !is_refusal(Errno::EPIPE));
}

/// The BSD/macOS path's copy through a buffer (used there for destinations `sendfile` refuses),
/// tested here on Linux, where it is compiled but not used.
#[test]
fn the_bounce_copy_keeps_sendfile_semantics_for_offsets_positions_and_full_destinations() {
  use crate::platform::bounce;
  let contents = pattern(300_000);
  let source = Fixture::new("bounce", &contents);
  let (reader, writer) = pipe().expect("pipe");
  let reader_thread = std::thread::spawn(move || drain(File::from(reader)));
  // An explicit offset advances only the offset.
  let mut offset = 1_000i64;
  let mut sent = 0;
  while sent < 100_000 {
    let copied = bounce::copy(
      writer.as_fd(),
      source.file.as_fd(),
      Some(&mut offset),
      None,
      100_000 - sent,
    )
    .expect("bounce copy");
    assert!(copied > 0);
    sent += copied;
  }
  assert_eq!(offset, 101_000);
  assert_eq!(lseek(source.file.as_fd(), 0, Whence::SeekCur), Ok(0));
  // No offset: the file position is read and advanced.
  lseek(source.file.as_fd(), 200_000, Whence::SeekSet).expect("seek");
  assert_eq!(
    bounce::copy(writer.as_fd(), source.file.as_fd(), None, None, 50),
    Ok(50)
  );
  assert_eq!(lseek(source.file.as_fd(), 0, Whence::SeekCur), Ok(200_050));
  // At end of file: 0.
  let mut at_end = contents.len() as i64;
  assert_eq!(
    bounce::copy(
      writer.as_fd(),
      source.file.as_fd(),
      Some(&mut at_end),
      None,
      10
    ),
    Ok(0)
  );
  drop(writer);
  let received = reader_thread.join().expect("reader");
  assert_eq!(&received[..100_000], &contents[1_000..101_000]);
  assert_eq!(&received[100_000..], &contents[200_000..200_050]);

  // A full non-blocking destination: EAGAIN, and the bytes read but not written are put back.
  let (_full_reader, full_writer) = pipe().expect("pipe");
  fcntl(&full_writer, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).expect("non-blocking");
  lseek(source.file.as_fd(), 0, Whence::SeekSet).expect("seek");
  let mut total = 0;
  let error = loop {
    match bounce::copy(
      full_writer.as_fd(),
      source.file.as_fd(),
      None,
      None,
      64 * 1024,
    ) {
      Ok(copied) => total += copied,
      Err(error) => break error,
    }
  };
  assert_eq!(error, Errno::EAGAIN);
  assert_eq!(
    lseek(source.file.as_fd(), 0, Whence::SeekCur),
    Ok(total as i64)
  );
}

#[test]
fn open_for_copy_truncates_only_another_file_and_never_waits_on_a_fifo() {
  let contents = pattern(10_000);
  let fixture = Fixture::new("open-for-copy", &contents);
  let dir = fixture.path.parent().expect("dir").to_path_buf();
  // An existing, longer destination is truncated before the copy.
  let destination = dir.join("destination");
  std::fs::write(&destination, pattern(50_000)).expect("write");
  let files = open_for_copy(&fixture.path, &destination, false).expect("open");
  assert_eq!(files.source_size, 10_000);
  assert_eq!(std::fs::metadata(&destination).expect("stat").len(), 0);
  drop(files);
  // A destination that is a link to the source is the source: never truncated.
  let link = dir.join("link");
  std::os::unix::fs::symlink(&fixture.path, &link).expect("symlink");
  let files = open_for_copy(&fixture.path, &link, false).expect("open");
  drop(files);
  assert_eq!(std::fs::read(&fixture.path).expect("read"), contents);
  // Exclusive: an existing destination is EEXIST, and left alone.
  assert_eq!(
    open_for_copy(&fixture.path, &link, true).err(),
    Some(Errno::EEXIST)
  );
  // A directory source is EISDIR; a FIFO source opens at once, without a writer.
  assert_eq!(
    open_for_copy(&dir, &dir.join("copy"), false).err(),
    Some(Errno::EISDIR)
  );
  let fifo = dir.join("fifo");
  nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
  let files = open_for_copy(&fifo, &dir.join("from-fifo"), false).expect("open a FIFO");
  let flags = fcntl(&files.source, FcntlArg::F_GETFL).expect("flags");
  assert!(!OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
}
