//! Node.js binding for `sendfile-core`: one request object per operation, one [`Outcome`] for
//! every call (sync or async; `sendfileSync`, the per-chunk call of a send loop, is the one
//! exception in form, see there), the async driver on napi-rs's tokio runtime with its promises
//! and progress reports delivered through one queue per JS thread (`settle.rs`), and errors
//! carried out as data (`errno`), because napi-rs cannot give an async rejection a custom `code`.
//! `lib/errors.ts` turns them into Node-style errors; `lib/native.ts` decides what a refusal
//! means (fall back or fail).

#![deny(clippy::all)]

pub mod inline;
pub mod open;
mod settle;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendfile_core::{
  open_for_copy, BlockedCall, Errno, FileCopy, Position, Refusal, Step, Stepwise, Transfer,
  WaitStrategy, INLINE_LIMIT,
};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

/// Bytes one async transfer moves before it reports progress and lets other transfers run,
/// like nginx's `sendfile_max_chunk` (2 MiB by default since nginx 1.21.4).
const PROGRESS_CHUNK: u64 = 2 * 1024 * 1024;

/// How often a cancelled blocking transfer signals its thread until the thread notices: a
/// signal that lands just before the syscall starts is absorbed without effect.
const INTERRUPT_RETRY: Duration = Duration::from_millis(2);

/// The async driver's runtime: one worker thread runs every readiness-driven transfer (each
/// step is one non-blocking syscall, and one thread keeps up with the NIC), and blocking
/// transfers go to tokio's blocking pool as before. napi-rs's default is one worker per core:
/// on a 2-core machine those workers spin looking for work against the JS thread and the peers.
#[napi_derive::module_init]
fn init() {
  let runtime = tokio::runtime::Builder::new_multi_thread()
    .worker_threads(1)
    .thread_name("zerocopy-sendfile")
    .enable_all()
    .build();
  if let Ok(runtime) = runtime {
    napi::bindgen_prelude::create_custom_tokio_runtime(runtime);
  }
}

/// A transfer from a file to a socket, pipe or file (`sendfile(2)`).
#[napi(object)]
pub struct SendRequest {
  pub out_fd: i32,
  pub in_fd: i32,
  /// Where to read; absent: from `inFd`'s file position, which then advances.
  pub offset: Option<i64>,
  /// Bytes to send; absent: until end of file. Zero sends nothing.
  pub count: Option<i64>,
  /// Whether a small cached range may first be tried on the calling thread (see `start_job`);
  /// absent: yes. False when the caller has just tried that itself (the inline send of
  /// `lib/send-path.ts`): a second probe would copy the range again and meet the same `EAGAIN`.
  pub try_now: Option<bool>,
}

/// A copy between two regular files. Neither file position moves, unless
/// `mayMoveDestinationPosition` (then `sendfile`, which writes at the position, may serve when
/// `copy_file_range` cannot).
#[napi(object)]
pub struct CopyRequest {
  pub destination_fd: i32,
  pub source_fd: i32,
  pub source_offset: i64,
  pub destination_offset: i64,
  /// Bytes to copy; absent: until end of file. Zero copies nothing.
  pub count: Option<i64>,
  pub may_move_destination_position: bool,
}

/// A whole file copy between two paths, opened, copied and closed in one native call, like
/// `fs.copyFile` (libuv's `uv_fs_copyfile`) does in one threadpool job.
#[napi(object)]
pub struct PathCopyRequest {
  pub source: String,
  pub destination: String,
  /// Fail with `EEXIST` when the destination exists.
  pub exclusive: bool,
  pub source_offset: i64,
  pub destination_offset: i64,
  /// Bytes to copy; absent: until end of file. Zero copies nothing.
  pub count: Option<i64>,
}

/// The mechanism that moved the bytes; `none` when none was tried.
#[napi(string_enum = "snake_case")]
pub enum Method {
  Sendfile,
  CopyFileRange,
  ReadWrite,
  None,
}

/// Why the kernel cannot serve this transfer, found before its first byte.
#[napi(string_enum = "snake_case")]
pub enum RefusalKind {
  /// The kernel answered `errno` (EINVAL, ENOSYS, EOPNOTSUPP): not with this call, not here.
  Unsupported,
  /// The source reports size 0 yet has bytes (procfs, sysfs): only `read(2)` finds its end.
  SizeUnknown,
}

impl From<Refusal> for RefusalKind {
  fn from(refusal: Refusal) -> Self {
    match refusal {
      Refusal::Unsupported(_) => RefusalKind::Unsupported,
      Refusal::SizeUnknown => RefusalKind::SizeUnknown,
    }
  }
}

/// How any call ended. `errno` is absent on success; `ECANCELED` after `cancel()`. `refusal`
/// is set when the kernel refused before any byte moved: the caller may try another way.
#[napi(object)]
pub struct Outcome {
  pub bytes: i64,
  pub errno: Option<i32>,
  pub method: Method,
  pub refusal: Option<RefusalKind>,
  /// The bytes the call set out to move, when the binding found out (a copy by path).
  pub total: Option<i64>,
}

impl Outcome {
  fn failed_before_start(errno: Errno) -> Self {
    Outcome {
      bytes: 0,
      errno: Some(errno as i32),
      method: Method::None,
      refusal: None,
      total: None,
    }
  }

  /// The bytes alone when they are the whole outcome: moved by `sendfile`, with no error, no
  /// refusal and no total to report. `lib/native.ts` reads a number as exactly that outcome.
  fn or_plain_bytes(self) -> Either<i64, Outcome> {
    match self {
      Outcome {
        bytes,
        errno: None,
        method: Method::Sendfile,
        refusal: None,
        total: None,
      } => Either::A(bytes),
      outcome => Either::B(outcome),
    }
  }

  fn of(work: &impl Stepwise, bytes: u64, error: Option<Errno>) -> Self {
    Outcome {
      bytes: bytes as i64,
      errno: error.map(|errno| errno as i32),
      method: method_of(work.method()),
      refusal: work.refusal().map(RefusalKind::from),
      total: None,
    }
  }
}

fn method_of(method: sendfile_core::Method) -> Method {
  match method {
    sendfile_core::Method::Sendfile => Method::Sendfile,
    sendfile_core::Method::CopyFileRange => Method::CopyFileRange,
    sendfile_core::Method::ReadWrite => Method::ReadWrite,
  }
}

/// A byte offset or count from JS, where `lib/validate.ts` has already refused negative and
/// unsafe values.
fn unsigned(value: i64) -> u64 {
  u64::try_from(value).unwrap_or(0)
}

impl SendRequest {
  /// The range `start_job` may try on the calling thread: known, and not just tried by the caller.
  fn range_to_try_now(&self) -> Option<(u64, u64)> {
    if self.try_now == Some(false) {
      return None;
    }
    Some((unsigned(self.offset?), unsigned(self.count?)))
  }

  fn transfer(&self) -> Transfer {
    let position = self
      .offset
      .map_or(Position::Current, |offset| Position::At(unsigned(offset)));
    Transfer::new(position, self.count.map(unsigned))
  }
}

impl PathCopyRequest {
  /// Opens both files and sets up the copy: the range is what the source holds now (a file
  /// that grows meanwhile copies no more), and `total` is that length, or `None` when the
  /// source's size is unknown (procfs).
  fn open(&self) -> std::result::Result<(OpenedPathCopy, FileCopy), Errno> {
    let files = open_for_copy(
      std::path::Path::new(&self.source),
      std::path::Path::new(&self.destination),
      self.exclusive,
    )?;
    let offset = unsigned(self.source_offset);
    let wanted = self.count.map(unsigned);
    let total = (files.source_size > 0).then(|| {
      let available = files.source_size.saturating_sub(offset);
      wanted.map_or(available, |wanted| wanted.min(available))
    });
    let copy = FileCopy::new(
      offset,
      unsigned(self.destination_offset),
      total.or(wanted),
      true,
    );
    Ok((
      OpenedPathCopy {
        source: files.source,
        destination: files.destination,
        total,
      },
      copy,
    ))
  }
}

struct OpenedPathCopy {
  source: OwnedFd,
  destination: OwnedFd,
  total: Option<u64>,
}

impl CopyRequest {
  fn copy(&self) -> FileCopy {
    FileCopy::new(
      unsigned(self.source_offset),
      unsigned(self.destination_offset),
      self.count.map(unsigned),
      self.may_move_destination_position,
    )
  }
}

/// Borrows two fd numbers from JS for the length of a synchronous call.
fn with_borrowed<T>(
  out_fd: RawFd,
  in_fd: RawFd,
  run: impl FnOnce(BorrowedFd<'_>, BorrowedFd<'_>) -> T,
) -> std::result::Result<T, Errno> {
  // SAFETY: JS passed these numbers for this synchronous call; they stay open (or are closed
  // and answer EBADF) until it returns, and the borrows do not outlive it.
  let out = unsafe { sendfile_core::borrow_raw_fd(out_fd) }?;
  // SAFETY: as above.
  let input = unsafe { sendfile_core::borrow_raw_fd(in_fd) }?;
  Ok(run(out, input))
}

/// One blocking transfer, with `write(2)`'s semantics for a short count: bytes that went out
/// before a full non-blocking socket (or another error) are the answer, the error recurs next.
///
/// The one call that takes a [`SendRequest`] as plain arguments and may answer with a plain
/// number, because a send loop makes it once per small chunk: napi reads an object's fields by
/// name, and V8 internalizes every name again on every call, then builds the [`Outcome`]
/// property by property (issue #13: 1.6 µs per 4 KiB call over C, against 0.4 µs before the
/// objects). The answer is the byte count alone when that is all the [`Outcome`] would say
/// (see [`Outcome::or_plain_bytes`]), else the whole [`Outcome`].
#[napi(
  js_name = "sendfileSync",
  ts_return_type = "number | Outcome",
  catch_unwind
)]
pub fn sendfile_sync(
  out_fd: i32,
  in_fd: i32,
  offset: Option<i64>,
  count: Option<i64>,
) -> Either<i64, Outcome> {
  let request = SendRequest {
    out_fd,
    in_fd,
    offset,
    count,
    try_now: None,
  };
  let mut transfer = request.transfer();
  with_borrowed(request.out_fd, request.in_fd, |out, input| {
    let outcome = transfer.run_blocking(out, input);
    Outcome::of(&transfer, outcome.bytes, outcome.error)
  })
  .unwrap_or_else(Outcome::failed_before_start)
  .or_plain_bytes()
}

/// A whole copy on the calling thread; an error after some bytes is still an error.
#[napi(js_name = "copyRangeSync", catch_unwind)]
pub fn copy_range_sync(request: CopyRequest) -> Outcome {
  let mut copy = request.copy();
  with_borrowed(
    request.destination_fd,
    request.source_fd,
    |destination, source| {
      let outcome = copy.run_blocking(destination, source);
      Outcome::of(&copy, outcome.bytes, outcome.error)
    },
  )
  .unwrap_or_else(Outcome::failed_before_start)
}

/// [`PathCopyRequest`] on the calling thread.
#[napi(js_name = "copyPathSync", catch_unwind)]
pub fn copy_path_sync(request: PathCopyRequest) -> Outcome {
  match request.open() {
    Ok((files, mut copy)) => {
      let outcome = copy.run_blocking(files.destination.as_fd(), files.source.as_fd());
      Outcome {
        total: files.total.map(|total| total as i64),
        ..Outcome::of(&copy, outcome.bytes, outcome.error)
      }
    }
    Err(errno) => Outcome::failed_before_start(errno),
  }
}

/// Cancels the async transfers it was passed to; a waiting or blocked transfer stops at once.
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

/// A JS progress callback: `(bytesMoved, total)`, total -1 when the binding does not know it.
type OnProgress<'env> = Function<'env, FnArgs<(f64, f64)>, ()>;

struct Job<W: Stepwise> {
  input: OwnedFd,
  work: W,
  token: CancellationToken,
  progress: Option<settle::Progress>,
  reported: u64,
  total: Option<u64>,
}

impl<W: Stepwise> Job<W> {
  /// Tells JS how far the transfer got, at most once per chunk (and whenever it is about to
  /// wait), without waiting for JS.
  fn report(&mut self, before_waiting: bool) {
    let done = self.work.bytes_moved();
    if done == self.reported || (!before_waiting && done - self.reported < PROGRESS_CHUNK) {
      return;
    }
    self.reported = done;
    if let Some(progress) = &self.progress {
      progress.report(done as f64, self.total.map_or(-1.0, |total| total as f64));
    }
  }

  /// Bytes the next step may move: never past the next progress report, so JS hears of every
  /// chunk however the kernel splits the writes.
  fn chunk_budget(&self) -> u64 {
    let unreported = self.work.bytes_moved() - self.reported;
    PROGRESS_CHUNK.saturating_sub(unreported).max(1)
  }

  fn step(&mut self, out: BorrowedFd<'_>) -> std::result::Result<Step, Errno> {
    let budget = self.chunk_budget();
    self.work.step(out, self.input.as_fd(), budget)
  }

  fn finish(&self, error: Option<Errno>) -> Outcome {
    Outcome {
      total: self.total.map(|total| total as i64),
      ..Outcome::of(&self.work, self.work.bytes_moved(), error)
    }
  }
}

/// How a job starts: settled on the calling thread already, or on its way with the strategy
/// that waits on its destination.
enum Start {
  Settled(Outcome),
  Pending(WaitStrategy),
}

/// Runs `work` on the calling thread while it moves bytes without waiting, and says how it
/// ended: `None` when the destination filled up first (the bytes that went out stay counted in
/// `work`, which goes on from there). Only for a non-blocking destination and a range that
/// [`sendfile_core::sendable_now`] allows (see [`start_job`]).
fn run_now<W: Stepwise>(
  work: &mut W,
  out: BorrowedFd<'_>,
  input: BorrowedFd<'_>,
) -> Option<Outcome> {
  loop {
    match work.step(out, input, INLINE_LIMIT) {
      Ok(Step::Sent(_)) | Err(Errno::EINTR) => continue,
      Ok(Step::Finished) => return Some(Outcome::of(work, work.bytes_moved(), None)),
      Ok(Step::WouldBlock) => return None,
      Err(errno) => return Some(Outcome::of(work, work.bytes_moved(), Some(errno))),
    }
  }
}

/// Starts an async transfer.
///
/// `range` is the `(offset, count)` the transfer reads, when both are known. When it is small
/// and in the page cache ([`sendfile_core::sendable_now`], the rule of the HTTP inline send)
/// and the destination is a non-blocking socket or pipe, the transfer is tried on the calling
/// thread first, as a `write(2)` of the same bytes would be, and one that finishes there settles
/// its promise at once: no duplicated fds, no job on the runtime, no wake-up of the JS thread
/// (issue #13: per 16 KiB transfer these cost more than the copy).
///
/// Anything else, and what a full destination left of a small one, duplicates both fds, so that
/// the caller closing its numbers (and their reuse) can never redirect a byte, then runs the job
/// on the tokio runtime: a non-blocking socket or pipe is awaited with `AsyncFd` between
/// `EAGAIN`s, anything else runs on tokio's blocking pool.
fn start_job<'env, W: Stepwise + Send + 'static>(
  env: &'env Env,
  out_fd: RawFd,
  in_fd: RawFd,
  mut work: W,
  range: Option<(u64, u64)>,
  control: &TransferControl,
  on_progress: Option<OnProgress<'env>>,
) -> Result<PromiseRaw<'env, Outcome>> {
  let start = with_borrowed(out_fd, in_fd, |out, input| {
    let strategy = sendfile_core::wait_strategy(out)?;
    let now = strategy == WaitStrategy::Readiness
      && range.is_some_and(|(offset, count)| sendfile_core::sendable_now(input, offset, count));
    if now {
      if let Some(outcome) = run_now(&mut work, out, input) {
        return Ok(Start::Settled(outcome));
      }
    }
    Ok(Start::Pending(strategy))
  })
  .and_then(|start| start);
  let strategy = match start {
    Ok(Start::Pending(strategy)) => strategy,
    Ok(Start::Settled(outcome)) => return PromiseRaw::resolve(env, outcome),
    Err(errno) => return PromiseRaw::resolve(env, Outcome::failed_before_start(errno)),
  };
  // SAFETY: the numbers come from JS for this call; open ones are duplicated before it
  // returns, closed ones answer EBADF.
  let (out, input) = match unsafe { sendfile_core::duplicate_pair(out_fd, in_fd) } {
    Ok(fds) => fds,
    Err(errno) => {
      return PromiseRaw::resolve(env, Outcome::of(&work, work.bytes_moved(), Some(errno)))
    }
  };
  let (promise, pending, progress) = settle::promise(env, on_progress)?;
  let job = Job {
    input,
    work,
    token: control.token.clone(),
    progress,
    reported: 0,
    total: None,
  };
  match strategy {
    WaitStrategy::Readiness => {
      spawn(async move { pending.settle(run_ready(out, job).await) });
    }
    WaitStrategy::Blocking => {
      spawn_blocking_job(control, pending, move |blocked| {
        run_blocking(out, job, blocked)
      });
    }
  }
  Ok(promise)
}

/// Runs `work` straight on tokio's blocking pool, without a hop through an async worker
/// first. The thread checks for a cancel before each chunk, and a cancel interrupts a step
/// blocked on a full destination, so a cancelled transfer has stopped writing by the time its
/// promise settles.
fn spawn_blocking_job(
  control: &TransferControl,
  pending: settle::Pending,
  work: impl FnOnce(&BlockedCall) -> Outcome + Send + 'static,
) {
  let token = control.token.clone();
  let blocked = Arc::new(BlockedCall::new());
  let worker_blocked = Arc::clone(&blocked);
  let mut blocking = spawn_blocking(move || work(&worker_blocked));
  spawn(async move {
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
    pending.settle(finished.unwrap_or_else(|_| Outcome::failed_before_start(Errno::EIO)));
  });
}

/// [`PathCopyRequest`] on tokio's blocking pool: open, copy and close in one job.
#[napi(
  js_name = "copyPathAsync",
  ts_return_type = "Promise<Outcome>",
  catch_unwind
)]
pub fn copy_path_async<'env>(
  env: &'env Env,
  request: PathCopyRequest,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesCopied: number, total: number) => void) | undefined | null")]
  on_progress: Option<OnProgress<'env>>,
) -> Result<PromiseRaw<'env, Outcome>> {
  let token = control.token.clone();
  let (promise, pending, progress) = settle::promise(env, on_progress)?;
  spawn_blocking_job(control, pending, move |blocked| {
    let (files, copy) = match request.open() {
      Ok(opened) => opened,
      Err(errno) => return Outcome::failed_before_start(errno),
    };
    let job = Job {
      input: files.source,
      work: copy,
      token,
      progress,
      reported: 0,
      total: files.total,
    };
    run_blocking(files.destination, job, blocked)
  });
  Ok(promise)
}

/// Sends a whole range (or up to end of file) without blocking a libuv thread.
#[napi(
  js_name = "sendfileAsync",
  ts_return_type = "Promise<Outcome>",
  catch_unwind
)]
pub fn sendfile_async<'env>(
  env: &'env Env,
  request: SendRequest,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesSent: number, total: number) => void) | undefined | null")]
  on_progress: Option<OnProgress<'env>>,
) -> Result<PromiseRaw<'env, Outcome>> {
  let transfer = request.transfer();
  start_job(
    env,
    request.out_fd,
    request.in_fd,
    transfer,
    request.range_to_try_now(),
    control,
    on_progress,
  )
}

/// [`copy_range_sync`] on tokio's blocking pool, with cancellation and progress.
#[napi(
  js_name = "copyRangeAsync",
  ts_return_type = "Promise<Outcome>",
  catch_unwind
)]
pub fn copy_range_async<'env>(
  env: &'env Env,
  request: CopyRequest,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesCopied: number, total: number) => void) | undefined | null")]
  on_progress: Option<OnProgress<'env>>,
) -> Result<PromiseRaw<'env, Outcome>> {
  let copy = request.copy();
  start_job(
    env,
    request.destination_fd,
    request.source_fd,
    copy,
    None,
    control,
    on_progress,
  )
}

fn run_blocking<W: Stepwise>(out: OwnedFd, mut job: Job<W>, blocked: &BlockedCall) -> Outcome {
  loop {
    blocked.enter();
    // Checked after `enter`: a cancel from now on interrupts the step below.
    if job.token.is_cancelled() {
      blocked.leave();
      return job.finish(Some(Errno::ECANCELED));
    }
    let step = job.step(out.as_fd());
    blocked.leave();
    match step {
      Ok(Step::Sent(_)) => job.report(false),
      // A signal (ours, after a cancel, or anyone's): look for the cancel, then go on.
      Err(Errno::EINTR) => continue,
      Ok(Step::Finished) => return job.finish(None),
      // A blocking destination answered EAGAIN (SO_SNDTIMEO expired, or O_NONBLOCK was set
      // since we looked): try again shortly rather than spin.
      Ok(Step::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
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

async fn run_ready<W: Stepwise>(out: OwnedFd, mut job: Job<W>) -> Outcome {
  let mut out = Destination::Plain(out);
  let mut since_yield = 0u64;
  loop {
    if job.token.is_cancelled() {
      return job.finish(Some(Errno::ECANCELED));
    }
    match job.step(out.fd()) {
      Ok(Step::Sent(sent)) => {
        job.report(false);
        since_yield += sent;
        // Like nginx's sendfile_max_chunk: one fast peer must not starve the others.
        if since_yield >= PROGRESS_CHUNK {
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
