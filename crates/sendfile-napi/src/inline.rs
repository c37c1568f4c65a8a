//! The inline send: a small, cached response sent from the event loop at once (see
//! `sendfile_core::send_now`), so it costs no native job and no completion.

use crate::RefusalKind;
use napi::bindgen_prelude::*;
use napi_derive::napi;
use sendfile_core::{borrow_raw_fd, send_now, Refusal};

/// A head and a file range for a non-blocking socket.
#[napi(object)]
pub struct SendNowRequest {
  pub out_fd: i32,
  pub in_fd: i32,
  /// Bytes that go before the body (a response's head), with `MSG_MORE`.
  pub head: Option<Buffer>,
  pub offset: i64,
  pub count: i64,
}

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

/// Sends the head and then the body range to a non-blocking socket without waiting, when the
/// range is in the page cache; stops at the first `EAGAIN`.
#[napi(js_name = "sendNowSync", catch_unwind)]
pub fn send_now_sync(request: SendNowRequest) -> SentNowOutcome {
  // SAFETY: both numbers are the caller's, open for this synchronous call.
  let fds = unsafe { (borrow_raw_fd(request.out_fd), borrow_raw_fd(request.in_fd)) };
  let (out, input) = match fds {
    (Ok(out), Ok(input)) => (out, input),
    (Err(errno), _) | (_, Err(errno)) => {
      return SentNowOutcome {
        skipped: false,
        head: 0,
        body: 0,
        errno: Some(errno as i32),
        refusal: None,
      }
    }
  };
  let head: &[u8] = request.head.as_deref().unwrap_or(&[]);
  let sent = send_now(
    out,
    head,
    input,
    u64::try_from(request.offset).unwrap_or(0),
    u64::try_from(request.count).unwrap_or(0),
  );
  SentNowOutcome {
    skipped: sent.skipped,
    head: sent.head as i64,
    body: sent.body as i64,
    errno: sent.error.map(|errno| errno as i32),
    refusal: sent.refusal.map(|refusal| match refusal {
      Refusal::Unsupported(_) => RefusalKind::Unsupported,
      Refusal::SizeUnknown => RefusalKind::SizeUnknown,
    }),
  }
}
