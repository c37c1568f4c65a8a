/** sendfile and sendfileSync: Python's os.sendfile, for Node. */
import * as fs from 'node:fs'

import { type SystemError, abortError, attachBytes, systemError, unsupported } from './errors.js'
import { NativeRun, bytesOf, nativeBinding, nativeLoadError, warnNotZeroCopy } from './native.js'
import { validateCount, validateFd, validateOffset, validateOptionsObject, validateSignal } from './validate.js'
import { pumpSync, streamRange, writeAllToFd } from './stream-fallback.js'
import type { SendfileOptions } from './options.js'

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
  return bytesOf(nativeBinding.sendfileSync(out, input, from, length), 'sendfile')
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
  const request = { outFd: out, inFd: input, offset: from, count: length }
  const result = await new NativeRun(native, { signal, total: -1 }).run((control) => native.sendfileAsync(request, control), 'sendfile', {})
  return result.bytes
}

/** `read`/`write` through a buffer: `syscall` names in errors stay `sendfile`, as callers expect. */
function asSendfileError(error: unknown): unknown {
  const errno = (error as NodeJS.ErrnoException).errno
  return typeof errno === 'number' ? systemError(errno, 'sendfile') : error
}

/**
 * {@link sendfileSync} without the native binding. With an explicit offset it keeps the same
 * semantics (short count on a full non-blocking fd). Without one it cannot: bytes read from the
 * file position but refused by a full destination could not be put back (Node has no lseek).
 */
function sendfileSyncWithoutNative(outFd: number, inFd: number, offset: number | undefined, count: number | undefined): number {
  warnNotZeroCopy()
  if (offset === undefined)
    throw unsupported('sendfileSync with a null offset needs the native binding; pass an explicit offset (or use sendfile) on this platform.', nativeLoadError)
  try {
    return pumpSync(inFd, { offset, length: count }, (chunk, sentSoFar) => {
      let written = 0
      while (written < chunk.length) {
        try {
          written += fs.writeSync(outFd, chunk, written, chunk.length - written)
        } catch (error) {
          // Like write(2): what went out is the answer; the error (EAGAIN included) recurs next call.
          if (sentSoFar + written > 0) return written
          throw error
        }
      }
      return written
    })
  } catch (error) {
    throw asSendfileError(error)
  }
}

/** {@link sendfile} without the native binding: the whole range, waiting out `EAGAIN`. */
async function sendfileWithoutNative(
  outFd: number,
  inFd: number,
  offset: number | undefined,
  count: number | undefined,
  signal: AbortSignal | undefined,
): Promise<number> {
  warnNotZeroCopy()
  try {
    return await streamRange({ fd: inFd, stats: fs.fstatSync(inFd) }, { offset, length: count }, { signal }, (chunk) => writeAllToFd(outFd, chunk, { signal }))
  } catch (error) {
    throw attachBytes(asSendfileError(error), (error as SystemError).bytesSent ?? 0)
  }
}
