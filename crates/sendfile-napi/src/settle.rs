//! Promises of the async calls, and their progress reports, delivered from the runtime's threads
//! through one threadsafe function per env (one per JS thread, unless the addon is loaded twice).
//!
//! napi-rs's `spawn_future` creates a threadsafe function (a `uv_async_t`, an env cleanup hook
//! and a few allocations) for every promise, as its `ThreadsafeFunction` does for every progress
//! callback, and libuv looks at every live `uv_async_t` on every wake-up of the event loop: with
//! 1000 transfers in flight, each completion paid for the other 999 (issue #13, `uv__async_io`
//! in the profile). Here every report and outcome goes through one queue, in the order they were
//! sent (a call's last progress report arrives before its outcome), and wake-ups of the JS
//! thread that arrive together are one wake-up.

use crate::Outcome;
use napi::bindgen_prelude::*;
use sendfile_core::Errno;
use std::cell::{Cell, RefCell};
use std::ffi::c_void;
use std::ptr;
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};

/// The threadsafe function that carries outcomes to one JS thread, shared with every pending
/// call; `None` once Node finalized it (its env is tearing down), and outcomes are dropped with
/// their promises. The lock is held across each call into it, so that the finalizer cannot free
/// it while a runtime thread is inside.
struct Channel {
  function: Mutex<Option<RawFunction>>,
}

struct RawFunction(sys::napi_threadsafe_function);

// SAFETY: calling a threadsafe function from any thread is what it is for; the mutex in
// `Channel` keeps it from being freed meanwhile.
unsafe impl Send for RawFunction {}

impl Channel {
  fn function(&self) -> MutexGuard<'_, Option<RawFunction>> {
    self
      .function
      .lock()
      .unwrap_or_else(|poisoned| poisoned.into_inner())
  }
}

/// What an env's JS thread keeps of its channel: the function itself, and how many promises
/// wait for it. The function keeps the event loop alive exactly while one does, like a pending
/// fs call.
struct Local {
  env: sys::napi_env,
  channel: Arc<Channel>,
  function: Cell<sys::napi_threadsafe_function>,
  pending: Cell<usize>,
}

thread_local! {
  // The channels of the envs on this thread: one, but for a module registry that loads the
  // addon again (a new env on the same thread). Each stays until Node finalizes its function.
  static LOCALS: RefCell<Vec<Rc<Local>>> = const { RefCell::new(Vec::new()) };
}

/// A JS progress callback, held by a reference that only the JS thread creates, reads and
/// deletes (the deletion comes with the call's outcome, after its last report).
#[derive(Clone, Copy)]
struct Callback(sys::napi_ref);

/// What the JS thread receives.
enum Delivery {
  /// Cumulative bytes moved and the bytes the call will move in all (-1: not known here).
  Progress {
    callback: Callback,
    done: f64,
    total: f64,
  },
  Outcome {
    deferred: sys::napi_deferred,
    outcome: Outcome,
    callback: Option<Callback>,
  },
}

impl Channel {
  /// Queues `delivery` for the JS thread, without waiting for it; dropped when the env is gone.
  fn send(&self, delivery: Delivery) {
    let function = self.function();
    let Some(function) = function.as_ref() else {
      return;
    };
    let delivery = Box::into_raw(Box::new(delivery));
    // SAFETY: the function is alive while the lock is held; on failure (its env is closing) the
    // delivery was not queued and is ours to free.
    let status = unsafe {
      sys::napi_call_threadsafe_function(
        function.0,
        delivery.cast(),
        sys::ThreadsafeFunctionCallMode::nonblocking,
      )
    };
    if status != sys::Status::napi_ok {
      // SAFETY: not queued, so not freed by `deliver`.
      drop(unsafe { Box::from_raw(delivery) });
    }
  }
}

/// Reports a call's progress to its JS callback, from any thread, without waiting for JS.
/// Weak: a pending call's promise, not its progress callback, keeps the process alive.
pub(crate) struct Progress {
  channel: Arc<Channel>,
  callback: Callback,
}

// SAFETY: the reference is only used on the JS thread (through the channel).
unsafe impl Send for Progress {}

impl Progress {
  pub(crate) fn report(&self, done: f64, total: f64) {
    self.channel.send(Delivery::Progress {
      callback: self.callback,
      done,
      total,
    });
  }
}

/// A promise's other half, for the thread that finishes the work: [`Pending::settle`] resolves
/// it with an outcome. Dropped unsettled (a panic unwinding the task, a runtime shutting down)
/// it resolves with `EIO`, so that no promise is left pending, keeping the process alive.
pub(crate) struct Pending {
  channel: Arc<Channel>,
  deferred: sys::napi_deferred,
  outcome: Option<Outcome>,
  callback: Option<Callback>,
}

// SAFETY: the deferred is only handed back to the JS thread (through the channel), which alone
// uses it.
unsafe impl Send for Pending {}

impl Pending {
  pub(crate) fn settle(mut self, outcome: Outcome) {
    self.outcome = Some(outcome);
  }
}

impl Drop for Pending {
  fn drop(&mut self) {
    let outcome = self
      .outcome
      .take()
      .unwrap_or_else(|| Outcome::failed_before_start(Errno::EIO));
    self.channel.send(Delivery::Outcome {
      deferred: self.deferred,
      outcome,
      callback: self.callback,
    });
  }
}

/// A new pending promise on this JS thread, the half that settles it from any thread, and
/// what reports progress to `on_progress` meanwhile.
pub(crate) fn promise<'env>(
  env: &'env Env,
  on_progress: Option<Function<'env, FnArgs<(f64, f64)>, ()>>,
) -> Result<(PromiseRaw<'env, Outcome>, Pending, Option<Progress>)> {
  let local = local(env)?;
  let callback = match on_progress {
    Some(function) => {
      let mut reference = ptr::null_mut();
      // SAFETY: a plain napi call on the JS thread; the reference is deleted in `deliver`.
      check_status!(unsafe {
        sys::napi_create_reference(env.raw(), function.raw(), 1, &mut reference)
      })?;
      Some(Callback(reference))
    }
    None => None,
  };
  let mut deferred = ptr::null_mut();
  let mut promise = ptr::null_mut();
  // SAFETY: a plain napi call on the JS thread, with out-pointers to locals.
  check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
  if local.pending.get() == 0 {
    // SAFETY: on the JS thread that owns the function, which is alive (it is in LOCALS).
    check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), local.function.get()) })?;
  }
  local.pending.set(local.pending.get() + 1);
  let progress = callback.map(|callback| Progress {
    channel: Arc::clone(&local.channel),
    callback,
  });
  let pending = Pending {
    channel: Arc::clone(&local.channel),
    deferred,
    outcome: None,
    callback,
  };
  Ok((PromiseRaw::new(env.raw(), promise), pending, progress))
}

/// The env's channel, created on first use, unreferenced while nothing waits on it.
fn local(env: &Env) -> Result<Rc<Local>> {
  let found = LOCALS.with_borrow(|locals| {
    locals
      .iter()
      .find(|local| local.env == env.raw())
      .map(Rc::clone)
  });
  if let Some(local) = found {
    return Ok(local);
  }
  let local = Rc::new(Local {
    env: env.raw(),
    channel: Arc::new(Channel {
      function: Mutex::new(None),
    }),
    function: Cell::new(ptr::null_mut()),
    pending: Cell::new(0),
  });
  let name = env.create_string("zerocopy-sendfile")?;
  let finalize_data = Arc::into_raw(Arc::clone(&local.channel)).cast_mut();
  let mut function = ptr::null_mut();
  // SAFETY: no JS function (N-API 5+: `deliver` does the work), an unbounded queue, a
  // finalizer that takes back the Arc handed over here, and as context the Local, which LOCALS
  // keeps until that finalizer runs (`deliver` reads it only before, with a non-null env).
  let status = unsafe {
    sys::napi_create_threadsafe_function(
      env.raw(),
      ptr::null_mut(),
      ptr::null_mut(),
      name.raw(),
      0,
      1,
      finalize_data.cast(),
      Some(finalize),
      Rc::as_ptr(&local).cast_mut().cast(),
      Some(deliver),
      &mut function,
    )
  };
  if status != sys::Status::napi_ok {
    // SAFETY: not handed over: the finalizer will never run.
    drop(unsafe { Arc::from_raw(finalize_data) });
    check_status!(status)?;
  }
  local.function.set(function);
  *local.channel.function() = Some(RawFunction(function));
  LOCALS.with_borrow_mut(|locals| locals.push(Rc::clone(&local)));
  // SAFETY: on the JS thread that created it.
  check_status!(unsafe { sys::napi_unref_threadsafe_function(env.raw(), function) })?;
  Ok(local)
}

/// Runs on the JS thread for each delivery (`env` null: the env is tearing down, the queue is
/// being emptied, and the promises and callbacks go with it).
unsafe extern "C" fn deliver(
  env: sys::napi_env,
  _callback: sys::napi_value,
  context: *mut c_void,
  data: *mut c_void,
) {
  // SAFETY: every queued pointer is a Box<Delivery> from `Channel::send`, delivered once.
  let delivery = unsafe { Box::from_raw(data.cast::<Delivery>()) };
  if env.is_null() {
    return;
  }
  match *delivery {
    // SAFETY: on the JS thread, inside the handle scope Node opens around this callback.
    Delivery::Progress {
      callback,
      done,
      total,
    } => unsafe { call_progress(env, callback, done, total) },
    Delivery::Outcome {
      deferred,
      outcome,
      callback,
    } => {
      // SAFETY: with a non-null env the function is not finalized yet, so LOCALS still holds
      // the Local that `context` points to.
      let local = unsafe { &*context.cast_const().cast::<Local>() };
      let pending = local.pending.get().saturating_sub(1);
      local.pending.set(pending);
      if pending == 0 {
        // SAFETY: on the JS thread, which owns the function; alive while it delivers.
        unsafe { sys::napi_unref_threadsafe_function(env, local.function.get()) };
      }
      // SAFETY: on the JS thread, inside Node's handle scope; the deferred is settled and the
      // reference deleted exactly once, here, after every report of this call (one queue).
      unsafe {
        match Outcome::to_napi_value(env, outcome) {
          Ok(value) => sys::napi_resolve_deferred(env, deferred, value),
          Err(error) => {
            sys::napi_reject_deferred(env, deferred, JsError::from(error).into_value(env))
          }
        };
        if let Some(callback) = callback {
          sys::napi_delete_reference(env, callback.0);
        }
      }
    }
  }
}

/// Calls a progress callback with `(done, total)`. It is `NativeRun`'s, which catches what the
/// user's callback throws; anything else thrown is Node's uncaught exception, as from any
/// callback.
///
/// # Safety
///
/// On the JS thread, inside a handle scope, with a reference that is not deleted yet.
unsafe fn call_progress(env: sys::napi_env, callback: Callback, done: f64, total: f64) {
  let mut function = ptr::null_mut();
  let mut receiver = ptr::null_mut();
  let mut args = [ptr::null_mut(); 2];
  let mut result = ptr::null_mut();
  // SAFETY: as the caller promises; each call fails cleanly (non-ok status) rather than crash.
  unsafe {
    if sys::napi_get_reference_value(env, callback.0, &mut function) != sys::Status::napi_ok
      || function.is_null()
      || sys::napi_get_undefined(env, &mut receiver) != sys::Status::napi_ok
      || sys::napi_create_double(env, done, &mut args[0]) != sys::Status::napi_ok
      || sys::napi_create_double(env, total, &mut args[1]) != sys::Status::napi_ok
    {
      return;
    }
    sys::napi_call_function(env, receiver, function, 2, args.as_ptr(), &mut result);
  }
}

/// Node finalizes the function when its env tears down: no delivery can reach it after this.
unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
  // SAFETY: `data` is the Arc handed over in `local`, taken back once, here.
  let channel = unsafe { Arc::from_raw(data.cast_const().cast::<Channel>()) };
  *channel.function() = None;
  let _ = LOCALS.try_with(|locals| {
    locals
      .borrow_mut()
      .retain(|local| !Arc::ptr_eq(&local.channel, &channel))
  });
}
