//! Node.js binding for `sendfile-core`: argument conversion, the async driver on napi-rs's
//! tokio runtime, and errors carried out as data (`errno`), because napi-rs cannot give an
//! async rejection a custom `code`. `index.ts` turns them into Node-style errors.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use sendfile_core::{
  BlockedCall, CopyMethod, Errno, FileCopy, Position, Step, Transfer, WaitStrategy,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

/// `offset` below zero means "use and advance the file position".
fn position(offset: i64) -> Position {
  u64::try_from(offset).map_or(Position::Current, Position::At)
}

/// A byte offset from JS; `index.ts` has already refused negative and unsafe values.
fn offset_of(offset: i64) -> u64 {
  u64::try_from(offset).unwrap_or(0)
}

/// A byte count from JS: `null` means "until end of file", any number is exact (0 sends nothing).
fn count(count: Option<i64>) -> Option<u64> {
  count.map(offset_of)
}

/// One blocking transfer (`count` null: until end of file). Returns the bytes sent, or
/// `-errno` when nothing was sent.
#[napi(js_name = "sendfileSync", catch_unwind)]
pub fn sendfile_sync(out_fd: i32, in_fd: i32, offset: i64, count_: Option<i64>) -> i64 {
  let fds = sendfile_core::borrow_raw_fd(out_fd)
    .and_then(|out| Ok((out, sendfile_core::borrow_raw_fd(in_fd)?)));
  let (out, input) = match fds {
    Ok(fds) => fds,
    Err(errno) => return -(errno as i64),
  };
  let outcome = Transfer::new(position(offset), count(count_)).run_blocking(out, input);
  match outcome.error {
    Some(errno) => -(errno as i64),
    None => outcome.bytes_sent as i64,
  }
}

/// How a transfer ended: `errno` is 0 on success, `ECANCELED` after `cancel()`; `method` is
/// the kernel mechanism that moved the bytes (`sendfile`, `copy_file_range`, `read_write`).
#[napi(object)]
pub struct NativeOutcome {
  pub bytes_sent: i64,
  pub errno: i32,
  pub method: String,
}

impl NativeOutcome {
  fn new(bytes_sent: u64, error: Option<Errno>, method: &str) -> Self {
    NativeOutcome {
      bytes_sent: bytes_sent as i64,
      errno: error.map_or(0, |errno| errno as i32),
      method: method.to_owned(),
    }
  }
}

/// What the async driver needs from a transfer or a copy: one bounded step at a time.
trait Stepwise: Send + 'static {
  fn step(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> std::result::Result<Step, Errno>;
  fn bytes_done(&self) -> u64;
  fn method(&self) -> &'static str;
}

impl Stepwise for Transfer {
  fn step(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> std::result::Result<Step, Errno> {
    Transfer::step(self, out, input, max_chunk)
  }
  fn bytes_done(&self) -> u64 {
    self.bytes_sent()
  }
  fn method(&self) -> &'static str {
    "sendfile"
  }
}

impl Stepwise for FileCopy {
  fn step(
    &mut self,
    out: BorrowedFd<'_>,
    input: BorrowedFd<'_>,
    max_chunk: u64,
  ) -> std::result::Result<Step, Errno> {
    FileCopy::step(self, out, input, max_chunk)
  }
  fn bytes_done(&self) -> u64 {
    self.bytes_copied()
  }
  fn method(&self) -> &'static str {
    copy_method_name(FileCopy::method(self))
  }
}

fn copy_method_name(method: CopyMethod) -> &'static str {
  match method {
    CopyMethod::CopyFileRange => "copy_file_range",
    CopyMethod::Sendfile => "sendfile",
    CopyMethod::ReadWrite => "read_write",
  }
}

/// Cancels the async transfers it was passed to; a waiting transfer wakes up at once.
#[napi]
pub struct TransferControl {
  token: CancellationToken,
}

#[napi]
impl TransferControl {
  #[napi(constructor)]
  #[allow(clippy::new_without_default)]
  pub fn new() -> Self {
    TransferControl {
      token: CancellationToken::new(),
    }
  }

  #[napi]
  pub fn cancel(&self) {
    self.token.cancel();
  }
}

/// Cumulative bytes sent, reported to JS without waiting for it. Weak: a pending transfer's
/// promise, not its progress callback, is what keeps the process alive.
type ProgressCallback = ThreadsafeFunction<f64, (), f64, Status, false, true>;

struct Job<S: Stepwise> {
  input: OwnedFd,
  transfer: S,
  max_chunk: u64,
  token: CancellationToken,
  progress: Option<ProgressCallback>,
  reported: u64,
}

impl<S: Stepwise> Job<S> {
  fn new(
    input: OwnedFd,
    transfer: S,
    max_chunk: i64,
    control: &TransferControl,
    progress: Option<ProgressCallback>,
  ) -> Self {
    Job {
      input,
      transfer,
      max_chunk: u64::try_from(max_chunk).unwrap_or(1).max(1),
      token: control.token.clone(),
      progress,
      reported: 0,
    }
  }

  /// Tells JS how far the transfer got, at most once per chunk (and whenever it is about to
  /// wait), without waiting for JS.
  fn report(&mut self, before_waiting: bool) {
    let done = self.transfer.bytes_done();
    if done == self.reported || (!before_waiting && done - self.reported < self.max_chunk) {
      return;
    }
    self.reported = done;
    if let Some(progress) = &self.progress {
      progress.call(done as f64, ThreadsafeFunctionCallMode::NonBlocking);
    }
  }

  /// Bytes the next step may move: never past the next progress report, so JS hears of every
  /// chunk however the kernel splits the writes.
  fn chunk_budget(&self) -> u64 {
    let unreported = self.transfer.bytes_done() - self.reported;
    self.max_chunk.saturating_sub(unreported).max(1)
  }

  fn finish(&self, error: Option<Errno>) -> NativeOutcome {
    NativeOutcome::new(self.transfer.bytes_done(), error, self.transfer.method())
  }
}

/// How often a cancelled blocking transfer signals its thread until the thread notices: a
/// signal that lands just before the syscall starts is absorbed without effect.
const INTERRUPT_RETRY: Duration = Duration::from_millis(2);

/// Duplicates both fds, so that the caller closing its numbers (and their reuse) can never
/// redirect a byte, then runs the job on the tokio runtime.
fn start_job<'env, S: Stepwise>(
  env: &'env Env,
  out_fd: i32,
  in_fd: i32,
  make_job: impl FnOnce(OwnedFd) -> Job<S>,
) -> Result<PromiseRaw<'env, NativeOutcome>> {
  let (out, input) = match sendfile_core::duplicate_pair(out_fd, in_fd) {
    Ok(fds) => fds,
    Err(errno) => {
      return env.spawn_future(async move { Ok(NativeOutcome::new(0, Some(errno), "none")) })
    }
  };
  let job = make_job(input);
  match sendfile_core::wait_strategy(&out) {
    Ok(WaitStrategy::Readiness) => env.spawn_future(async move { Ok(run_ready(out, job).await) }),
    // Straight onto the blocking pool, without a hop through an async worker first. The thread
    // checks for a cancel before each chunk, and a cancel interrupts a step blocked on a full
    // destination, so a cancelled transfer has stopped writing by the time its promise settles.
    Ok(WaitStrategy::Blocking) => {
      let token = job.token.clone();
      let blocked = Arc::new(BlockedCall::new());
      let worker_blocked = Arc::clone(&blocked);
      let mut blocking = spawn_blocking(move || run_blocking(out, job, &worker_blocked));
      env.spawn_future(async move {
        let finished = tokio::select! {
          finished = &mut blocking => finished,
          _ = token.cancelled() => loop {
            blocked.interrupt();
            tokio::select! {
              finished = &mut blocking => break finished,
              _ = tokio::time::sleep(INTERRUPT_RETRY) => {}
            }
          },
        };
        Ok(finished.unwrap_or_else(|_| NativeOutcome::new(0, Some(Errno::EIO), "none")))
      })
    }
    Err(errno) => {
      let outcome = job.finish(Some(errno));
      env.spawn_future(async move { Ok(outcome) })
    }
  }
}

/// Sends a whole range (or up to end of file) without blocking a libuv thread: a non-blocking
/// socket or pipe is awaited with tokio's `AsyncFd` (epoll/kqueue) between `EAGAIN`s; anything
/// else runs on tokio's blocking pool.
#[napi(
  js_name = "sendfileAsync",
  ts_return_type = "Promise<NativeOutcome>",
  catch_unwind
)]
#[allow(clippy::too_many_arguments)]
pub fn sendfile_async<'env>(
  env: &'env Env,
  out_fd: i32,
  in_fd: i32,
  offset: i64,
  count_: Option<i64>,
  max_chunk: i64,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesSent: number) => void) | undefined | null")] on_progress: Option<
    ProgressCallback,
  >,
) -> Result<PromiseRaw<'env, NativeOutcome>> {
  let transfer = Transfer::new(position(offset), count(count_));
  start_job(env, out_fd, in_fd, |input| {
    Job::new(input, transfer, max_chunk, control, on_progress)
  })
}

/// Copies `count` bytes (null: to end of file) from `sourceOffset` of one file to
/// `destinationOffset` of another, on the calling thread. Neither file position moves unless
/// `mayMoveDestinationPosition` (then `sendfile` may serve when `copy_file_range` cannot).
#[napi(js_name = "copyRangeSync", catch_unwind)]
pub fn copy_range_sync(
  destination_fd: i32,
  source_fd: i32,
  source_offset: i64,
  destination_offset: i64,
  count_: Option<i64>,
  may_move_destination_position: bool,
) -> NativeOutcome {
  let mut copy = FileCopy::new(
    offset_of(source_offset),
    offset_of(destination_offset),
    count(count_),
    may_move_destination_position,
  );
  let fds = sendfile_core::borrow_raw_fd(destination_fd)
    .and_then(|out| Ok((out, sendfile_core::borrow_raw_fd(source_fd)?)));
  match fds {
    Ok((destination, source)) => {
      let outcome = copy.run_blocking(destination, source);
      NativeOutcome::new(
        outcome.bytes_sent,
        outcome.error,
        copy_method_name(copy.method()),
      )
    }
    Err(errno) => NativeOutcome::new(0, Some(errno), "none"),
  }
}

/// [`copy_range_sync`] on tokio's blocking pool, with cancellation and progress.
#[napi(
  js_name = "copyRangeAsync",
  ts_return_type = "Promise<NativeOutcome>",
  catch_unwind
)]
#[allow(clippy::too_many_arguments)]
pub fn copy_range_async<'env>(
  env: &'env Env,
  destination_fd: i32,
  source_fd: i32,
  source_offset: i64,
  destination_offset: i64,
  count_: Option<i64>,
  may_move_destination_position: bool,
  max_chunk: i64,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesCopied: number) => void) | undefined | null")] on_progress: Option<
    ProgressCallback,
  >,
) -> Result<PromiseRaw<'env, NativeOutcome>> {
  let copy = FileCopy::new(
    offset_of(source_offset),
    offset_of(destination_offset),
    count(count_),
    may_move_destination_position,
  );
  start_job(env, destination_fd, source_fd, |input| {
    Job::new(input, copy, max_chunk, control, on_progress)
  })
}

fn run_blocking<S: Stepwise>(
  out: OwnedFd,
  mut job: Job<S>,
  blocked: &BlockedCall,
) -> NativeOutcome {
  loop {
    blocked.enter();
    // Checked after `enter`: a cancel from now on interrupts the step below.
    if job.token.is_cancelled() {
      blocked.leave();
      return job.finish(Some(Errno::ECANCELED));
    }
    let step = job
      .transfer
      .step(out.as_fd(), job.input.as_fd(), job.chunk_budget());
    blocked.leave();
    match step {
      Ok(Step::Sent(_)) => job.report(false),
      // A signal (ours, after a cancel, or anyone's): look for the cancel, then go on.
      Err(Errno::EINTR) => continue,
      Ok(Step::Finished) => return job.finish(None),
      // A blocking destination answered EAGAIN (SO_SNDTIMEO expired, or O_NONBLOCK was set
      // since we looked): try again shortly rather than spin.
      Ok(Step::WouldBlock) => std::thread::sleep(std::time::Duration::from_millis(1)),
      Err(errno) => return job.finish(Some(errno)),
    }
  }
}

/// The destination of a readiness-driven transfer: registered with epoll only on its first
/// `EAGAIN`, so a transfer that fits the socket buffer costs no `epoll_ctl` at all.
enum Destination {
  Plain(OwnedFd),
  Polled(AsyncFd<OwnedFd>),
}

impl Destination {
  fn fd(&self) -> BorrowedFd<'_> {
    match self {
      Destination::Plain(fd) => fd.as_fd(),
      Destination::Polled(fd) => fd.get_ref().as_fd(),
    }
  }
}

async fn run_ready<S: Stepwise>(out: OwnedFd, mut job: Job<S>) -> NativeOutcome {
  let mut out = Destination::Plain(out);
  let mut since_yield = 0u64;
  loop {
    if job.token.is_cancelled() {
      return job.finish(Some(Errno::ECANCELED));
    }
    match job
      .transfer
      .step(out.fd(), job.input.as_fd(), job.chunk_budget())
    {
      Ok(Step::Sent(sent)) => {
        job.report(false);
        since_yield += sent;
        // Like nginx's sendfile_max_chunk: one fast peer must not starve the others.
        if since_yield >= job.max_chunk {
          since_yield = 0;
          tokio::task::yield_now().await;
        }
      }
      Ok(Step::Finished) => return job.finish(None),
      Err(Errno::EINTR) => continue,
      Err(errno) => return job.finish(Some(errno)),
      Ok(Step::WouldBlock) => {
        since_yield = 0;
        job.report(true);
        if let Destination::Plain(fd) = out {
          // SAFETY: the OwnedFd is ours alone and is neither replaced nor closed while the
          // AsyncFd owns it; dropping the AsyncFd deregisters it before closing it.
          match unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) } {
            Ok(polled) => out = Destination::Polled(polled),
            Err(error) => return job.finish(Some(errno_of(&error.into_parts().1))),
          }
        }
        let Destination::Polled(polled) = &out else {
          continue;
        };
        tokio::select! {
          guard = polled.writable() => match guard {
            // AsyncFd is edge-triggered: forget readiness only because of the real EAGAIN above.
            Ok(mut guard) => guard.clear_ready(),
            Err(error) => return job.finish(Some(errno_of(&error))),
          },
          _ = job.token.cancelled() => return job.finish(Some(Errno::ECANCELED)),
        }
      }
    }
  }
}

fn errno_of(error: &std::io::Error) -> Errno {
  Errno::from_raw(error.raw_os_error().unwrap_or(Errno::EIO as i32))
}
