//! Node.js binding for `sendfile-core`: argument conversion, the async driver on napi-rs's
//! tokio runtime, and errors carried out as data (`errno`), because napi-rs cannot give an
//! async rejection a custom `code`. `index.ts` turns them into Node-style errors.

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use sendfile_core::{Errno, Position, Step, Transfer, WaitStrategy};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio_util::sync::CancellationToken;

/// `offset` below zero means "use and advance the file position".
fn position(offset: i64) -> Position {
  u64::try_from(offset).map_or(Position::Current, Position::At)
}

fn count(count: i64) -> u64 {
  u64::try_from(count).unwrap_or(0)
}

/// One blocking transfer. Returns the bytes sent, or `-errno` when nothing was sent.
#[napi(js_name = "sendfileSync", catch_unwind)]
pub fn sendfile_sync(out_fd: i32, in_fd: i32, offset: i64, count_: i64) -> i64 {
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

/// How an async transfer ended: `errno` is 0 on success, `ECANCELED` after `cancel()`.
#[napi(object)]
pub struct NativeOutcome {
  pub bytes_sent: i64,
  pub errno: i32,
}

impl NativeOutcome {
  fn new(bytes_sent: u64, error: Option<Errno>) -> Self {
    NativeOutcome {
      bytes_sent: bytes_sent as i64,
      errno: error.map_or(0, |errno| errno as i32),
    }
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

struct Job {
  input: OwnedFd,
  transfer: Transfer,
  max_chunk: u64,
  token: CancellationToken,
  progress: Option<ProgressCallback>,
}

impl Job {
  fn report(&self) {
    if let Some(progress) = &self.progress {
      progress.call(
        self.transfer.bytes_sent() as f64,
        ThreadsafeFunctionCallMode::NonBlocking,
      );
    }
  }

  fn finish(&self, error: Option<Errno>) -> NativeOutcome {
    NativeOutcome::new(self.transfer.bytes_sent(), error)
  }
}

/// Sends a whole range (or up to end of file) without blocking a libuv thread: a non-blocking
/// socket or pipe is awaited with tokio's `AsyncFd` (epoll/kqueue) between `EAGAIN`s; anything
/// else runs on tokio's blocking pool. The fds are duplicated before this returns, so closing
/// the caller's numbers (and their reuse) can never redirect a byte.
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
  count_: i64,
  max_chunk: i64,
  control: &TransferControl,
  #[napi(ts_arg_type = "((bytesSent: number) => void) | undefined | null")] on_progress: Option<
    ProgressCallback,
  >,
) -> Result<PromiseRaw<'env, NativeOutcome>> {
  let fds =
    sendfile_core::duplicate(out_fd).and_then(|out| Ok((out, sendfile_core::duplicate(in_fd)?)));
  let (out, input) = match fds {
    Ok(fds) => fds,
    Err(errno) => return env.spawn_future(async move { Ok(NativeOutcome::new(0, Some(errno))) }),
  };
  let job = Job {
    input,
    transfer: Transfer::new(position(offset), count(count_)),
    max_chunk: u64::try_from(max_chunk).unwrap_or(1).max(1),
    token: control.token.clone(),
    progress: on_progress,
  };
  env.spawn_future(async move { Ok(run(out, job).await) })
}

async fn run(out: OwnedFd, job: Job) -> NativeOutcome {
  match sendfile_core::wait_strategy(&out) {
    Ok(WaitStrategy::Readiness) => run_ready(out, job).await,
    Ok(WaitStrategy::Blocking) => {
      let token = job.token.clone();
      let blocking = tokio::task::spawn_blocking(move || run_blocking(out, job));
      tokio::select! {
        finished = blocking => finished.unwrap_or_else(|_| NativeOutcome::new(0, Some(Errno::EIO))),
        // The blocking thread stops before its next chunk; the caller learns of the cancel now.
        _ = token.cancelled() => NativeOutcome::new(0, Some(Errno::ECANCELED)),
      }
    }
    Err(errno) => job.finish(Some(errno)),
  }
}

fn run_blocking(out: OwnedFd, mut job: Job) -> NativeOutcome {
  loop {
    if job.token.is_cancelled() {
      return job.finish(Some(Errno::ECANCELED));
    }
    match job
      .transfer
      .step(out.as_fd(), job.input.as_fd(), job.max_chunk)
    {
      Ok(Step::Sent(_)) => job.report(),
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

async fn run_ready(out: OwnedFd, mut job: Job) -> NativeOutcome {
  let mut out = Destination::Plain(out);
  let mut since_yield = 0u64;
  loop {
    if job.token.is_cancelled() {
      return job.finish(Some(Errno::ECANCELED));
    }
    match job
      .transfer
      .step(out.fd(), job.input.as_fd(), job.max_chunk)
    {
      Ok(Step::Sent(sent)) => {
        job.report();
        since_yield += sent;
        // Like nginx's sendfile_max_chunk: one fast peer must not starve the others.
        if since_yield >= job.max_chunk {
          since_yield = 0;
          tokio::task::yield_now().await;
        }
      }
      Ok(Step::Finished) => return job.finish(None),
      Err(errno) => return job.finish(Some(errno)),
      Ok(Step::WouldBlock) => {
        since_yield = 0;
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
