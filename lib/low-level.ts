/** sendfile and sendfileSync: Python's os.sendfile, for Node. */
import * as fs from 'node:fs'
import * as util from 'node:util'

import { abortError, attachBytes, systemError, unsupported } from './errors.js'
import { CHUNK_SIZE, NativeRun, nativeBinding, nativeLoadError, warnNotZeroCopy } from './native.js'
import { validateCount, validateFd, validateOffset, validateOptionsObject, validateSignal } from './validate.js'
import { FALLBACK_CHUNK, untilAborted, writeAllToFd } from './stream-fallback.js'
import { SendfileOptions } from './options.js'

/**
 * Copies bytes from the file `inFd` to `outFd` (a socket, pipe or regular file) inside the
 * kernel, without passing them through JavaScript, and returns how many were sent.
 *
 * - `offset` a number: read from there; `inFd`'s file position does not change.
 *   `null` or omitted: read from the file position and advance it.
 * - `count` 0 or omitted: until end of file.
 * - A blocking `outFd` gets everything up to `count` (or end of file). A non-blocking one (every
 *   Node socket) gets what fits: the count is short when its buffer fills after some bytes went
 *   out, and an error with code `EAGAIN` is thrown when nothing fit.
 *
 * @example
 * ```ts
 * const file = fs.openSync('song.txt', 'r')
 * let offset = 0
 * while (offset < size) offset += sendfileSync(socketFd(socket), file, offset)   // EAGAIN: wait for 'drain'-like writability
 * ```
 */
export function sendfileSync(outFd: number, inFd: number, offset?: number | null, count?: number): number {
  const out = validateFd(outFd, 'outFd')
  const input = validateFd(inFd, 'inFd')
  const from = validateOffset(offset)
  const length = validateCount(count)
  if (nativeBinding === null) return sendfileSyncWithoutNative(out, input, from, length)
  const result = nativeBinding.sendfileSync(out, input, from, length)
  if (result < 0) throw systemError(-result, 'sendfile')
  return result
}

/**
 * Like {@link sendfileSync}, but resolves only when the whole range (or up to end of file) is
 * sent. When `outFd` is a full non-blocking socket it waits for writability in the native event
 * loop (epoll/kqueue), never on a libuv thread, so thousands of slow peers cost nothing. A
 * failure rejects with a Node-style system error whose `bytesSent` tells how far it got.
 *
 * `outFd` and `inFd` are duplicated before this returns: closing them while the transfer runs
 * never sends a byte to whatever reuses their numbers, and for the same reason closing them
 * does not stop the transfer (the duplicates keep the socket and the file open until the last
 * byte is sent). `options.signal` stops it, even while it waits on a full blocking pipe or
 * socket: the promise rejects with an `AbortError` carrying `bytesSent`, and the duplicates
 * are closed.
 *
 * @example
 * ```ts
 * const file = await fs.promises.open('song.txt')
 * const sent = await sendfile(socketFd(socket), file.fd, 0, undefined, { signal: AbortSignal.timeout(30_000) })
 * ```
 */
export async function sendfile(outFd: number, inFd: number, offset?: number | null, count?: number, options?: SendfileOptions): Promise<number> {
  const out = validateFd(outFd, 'outFd')
  const input = validateFd(inFd, 'inFd')
  const from = validateOffset(offset)
  const length = validateCount(count)
  const signal = validateSignal(validateOptionsObject(options).signal)
  if (signal?.aborted) throw abortError(signal)
  if (nativeBinding === null) return sendfileWithoutNative(out, input, from, length, signal)
  const native = nativeBinding
  const result = await new NativeRun(native, { signal, total: -1 }).run((control) => native.sendfileAsync(out, input, from, length, CHUNK_SIZE, control), 'sendfile', {})
  return result.bytes
}

/** `read`/`write` through a buffer: `syscall` names in errors stay `sendfile`, as callers expect. */
function asSendfileError(error: unknown): unknown {
  const errno = (error as NodeJS.ErrnoException).errno
  return typeof errno === 'number' ? systemError(errno, 'sendfile') : error
}

/**
 * {@link sendfileSync} without the native binding. With an explicit offset it keeps the same
 * semantics (short count on a full non-blocking fd). With `null` it cannot: bytes read from the
 * file position but refused by a full destination could not be put back (Node has no lseek).
 */
function sendfileSyncWithoutNative(outFd: number, inFd: number, offset: number, count: number | null): number {
  warnNotZeroCopy()
  if (offset < 0) throw unsupported('sendfileSync with a null offset needs the native binding; pass an explicit offset (or use sendfile) on this platform.', nativeLoadError)
  const buffer = Buffer.allocUnsafe(FALLBACK_CHUNK)
  let sent = 0
  for (;;) {
    const wanted = count === null ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, count - sent)
    if (wanted <= 0) return sent
    let read: number
    try {
      read = fs.readSync(inFd, buffer, 0, wanted, offset + sent)
    } catch (error) {
      if (sent > 0) return sent
      throw asSendfileError(error)
    }
    if (read === 0) return sent
    let written = 0
    while (written < read) {
      try {
        written += fs.writeSync(outFd, buffer, written, read - written)
      } catch (error) {
        // Like write(2): what went out is the answer; the error (EAGAIN included) recurs next call.
        if (sent + written > 0) return sent + written
        throw asSendfileError(error)
      }
    }
    sent += read
  }
}

/** {@link sendfile} without the native binding: the whole range, waiting out `EAGAIN`. */
async function sendfileWithoutNative(outFd: number, inFd: number, offset: number, count: number | null, signal: AbortSignal | undefined): Promise<number> {
  warnNotZeroCopy()
  const buffer = Buffer.allocUnsafe(FALLBACK_CHUNK)
  const read = util.promisify(fs.read)
  let sent = 0
  try {
    for (;;) {
      const wanted = count === null ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, count - sent)
      if (wanted <= 0) return sent
      if (signal?.aborted) throw abortError(signal)
      const { bytesRead } = await read(inFd, buffer, 0, wanted, offset < 0 ? null : offset + sent)
      if (bytesRead === 0) return sent
      await untilAborted(writeAllToFd(outFd, buffer.subarray(0, bytesRead), signal), signal)
      sent += bytesRead
    }
  } catch (error) {
    throw attachBytes(asSendfileError(error), sent)
  }
}
