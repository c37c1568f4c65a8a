//! The inline send: a small, cached response sent from the event loop at once (see
//! `sendfile_core::send_now`), so it costs no native job and no completion.

use crate::RefusalKind;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendfile_core::{borrow_raw_fd, send_now};

/// How far a `sendNowSync` got. `skipped`: nothing was tried (not all cached, too large, or an
/// OS that cannot tell); else `head` and `body` bytes went out, and `errno`/`refusal` say why
/// it stopped short when the socket was not simply full.
#[napi(object)]
pub struct SentNowOutcome {
  pub skipped: bool,
  pub head: i64,
  pub body: i64,
  pub errno: Option<i32>,
  pub refusal: Option<RefusalKind>,
}

/// Sends `head` and then `count` bytes of `inFd` from `offset` to the non-blocking socket
/// `outFd` without waiting, when the range is in the page cache; stops at the first `EAGAIN`.
///
/// Plain arguments, and a plain number (the body bytes) when everything went, like
/// `sendfileSync`: it runs once per small HTTP response, and reading an object's fields by name
/// and building one cost as much as the syscalls (perf: `napi_get_named_property`,
/// `napi_define_properties`). Anything short of complete answers a [`SentNowOutcome`].
#[napi(
  js_name = "sendNowSync",
  ts_return_type = "number | SentNowOutcome",
  catch_unwind
)]
pub fn send_now_sync(
  out_fd: i32,
  in_fd: i32,
  head: Option<Buffer>,
  offset: i64,
  count: i64,
) -> Either<i64, SentNowOutcome> {
  // SAFETY: both numbers are the caller's, open for this synchronous call.
  let fds = unsafe { (borrow_raw_fd(out_fd), borrow_raw_fd(in_fd)) };
  let (out, input) = match fds {
    (Ok(out), Ok(input)) => (out, input),
    (Err(errno), _) | (_, Err(errno)) => {
      return Either::B(SentNowOutcome {
        skipped: false,
        head: 0,
        body: 0,
        errno: Some(errno as i32),
        refusal: None,
      })
    }
  };
  let head: &[u8] = head.as_deref().unwrap_or(&[]);
  let count = u64::try_from(count).unwrap_or(0);
  let sent = send_now(out, head, input, u64::try_from(offset).unwrap_or(0), count);
  if !sent.skipped
    && sent.head == head.len()
    && sent.body == count
    && sent.error.is_none()
    && sent.refusal.is_none()
  {
    return Either::A(sent.body as i64);
  }
  Either::B(SentNowOutcome {
    skipped: sent.skipped,
    head: sent.head as i64,
    body: sent.body as i64,
    errno: sent.error.map(|errno| errno as i32),
    refusal: sent.refusal.map(RefusalKind::from),
  })
}
