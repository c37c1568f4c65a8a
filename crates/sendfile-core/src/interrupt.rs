//! Interrupting a thread blocked inside `sendfile(2)` on a blocking destination.
//!
//! A FIFO opened without `O_NONBLOCK` whose reader never reads, or a blocking socket to a
//! stalled peer, blocks the call until the peer makes room: checking for a cancel between
//! steps is not enough. We may not set `O_NONBLOCK` (the flag belongs to the open file, which
//! the caller shares), and the room in a socket buffer cannot be known exactly in bytes, so
//! bounding each step to it is unsound. What is sound is the classic one: a signal sent to the
//! blocked thread with `pthread_kill`, whose handler does nothing and is installed without
//! `SA_RESTART`, so the call returns early (`EINTR`, or the short count of what went out) and
//! the driver sees the cancel before it calls again (signal(7), "Interruption of system calls").
//!
//! The signal is a real-time one where the system has them (nothing is delivered to the process
//! by the kernel on its own, unlike SIGURG or SIGPIPE), and SIGURG elsewhere (ignored by default, and sent by the
//! kernel only to a process that asked for out-of-band notices with `F_SETOWN`).
//! If the application already handles that signal, we leave its handler alone and blocking
//! transfers are cancelled between steps only.

use nix::libc;
use std::sync::{Mutex, OnceLock};

#[cfg(linux_like)]
fn interrupt_signal() -> libc::c_int {
  // A few above SIGRTMIN: C libraries and emulators (qemu-user) keep the first and the last
  // ones for themselves.
  libc::SIGRTMIN() + 6
}

#[cfg(not(linux_like))]
fn interrupt_signal() -> libc::c_int {
  libc::SIGURG
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Installs the do-nothing handler once per process; false when the signal is someone else's.
fn handler_installed() -> bool {
  static INSTALLED: OnceLock<bool> = OnceLock::new();
  *INSTALLED.get_or_init(|| {
    let signal = interrupt_signal();
    // SAFETY: sigaction with a null new action only reads the current one into `current`.
    let mut current: libc::sigaction = unsafe { std::mem::zeroed() };
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut current) } != 0 {
      return false;
    }
    if current.sa_sigaction != libc::SIG_DFL {
      return false;
    }
    // SAFETY: a zeroed sigaction is a valid value; we fill the fields we need. The handler is
    // async-signal-safe (it does nothing), and no SA_RESTART flag is set, on purpose.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    action.sa_flags = 0;
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: installs a handler that does nothing for a signal nobody else handles.
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) == 0 }
  })
}

/// The thread, if any, that is inside a blocking step of one transfer.
///
/// The worker wraps each step in [`BlockedCall::enter`]/[`BlockedCall::leave`]; a canceller
/// calls [`BlockedCall::interrupt`] repeatedly until the worker is done, since a signal that
/// arrives just before the syscall starts is absorbed without effect.
#[derive(Default)]
pub struct BlockedCall {
  thread: Mutex<Option<ThreadId>>,
}

/// A thread's id, only ever handed to `pthread_kill`. musl's `pthread_t` is a pointer, which
/// Rust does not let cross threads on its own.
struct ThreadId(libc::pthread_t);

// SAFETY: the id is never dereferenced; pthread_kill may be called with it from any thread.
unsafe impl Send for ThreadId {}

impl BlockedCall {
  pub fn new() -> Self {
    BlockedCall::default()
  }

  /// The calling thread is about to make a call that may block.
  pub fn enter(&self) {
    if !handler_installed() {
      return;
    }
    // SAFETY: pthread_self has no preconditions.
    let me = unsafe { libc::pthread_self() };
    if let Ok(mut thread) = self.thread.lock() {
      *thread = Some(ThreadId(me));
    }
  }

  /// The call is over: the thread may go on to other work and must not be signalled.
  pub fn leave(&self) {
    if let Ok(mut thread) = self.thread.lock() {
      *thread = None;
    }
  }

  /// Makes the blocked call, if any, return early. Holding the lock keeps the thread from
  /// leaving (and going on to other work) while it is signalled.
  pub fn interrupt(&self) {
    if let Ok(thread) = self.thread.lock() {
      if let Some(ThreadId(thread)) = *thread {
        // SAFETY: `thread` is inside `enter`..`leave` of this transfer (we hold the lock that
        // `leave` takes), so it is alive; the signal's handler does nothing.
        unsafe { libc::pthread_kill(thread, interrupt_signal()) };
      }
    }
  }
}
