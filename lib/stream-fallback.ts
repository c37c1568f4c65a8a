/** The fallback: the same bytes through JavaScript, with backpressure and abort. */
import * as fs from 'node:fs'
import * as util from 'node:util'

import { onAbort } from './abort.js'
import { abortError, attachBytes } from './errors.js'
import type { TransferHooks } from './native.js'
import type { FixedRange, Range } from './validate.js'

/**
 * The buffer of every copy through JavaScript: the same size as the native copies' buffer
 * (`COPY_BUFFER_SIZE` in the core crate), large enough that the syscalls cost little next to
 * the copying, small enough to stay in a CPU's L2 cache.
 */
export const FALLBACK_CHUNK = 256 * 1024

/** A file to read from: its fd, and whether it has positions (a pipe has none). */
interface Readable {
  fd: number
  stats: fs.Stats
}

/**
 * Reads `range` of `file` chunk by chunk and hands each to `write`, which resolves when the
 * chunk is on its way (backpressure). Reads at explicit positions, so the file position never
 * moves, unless `range.offset` is undefined (then it reads from the file position and advances
 * it); a pipe, which has no positions, has its first `range.offset` bytes skipped.
 */
export async function streamRange(
  file: Readable,
  range: Range,
  hooks: Omit<TransferHooks, 'total'> & { total?: number },
  write: (chunk: Buffer) => Promise<void>,
): Promise<number> {
  const { signal, onProgress, total = -1 } = hooks
  const seekable = range.offset !== undefined && (file.stats.isFile() || file.stats.isBlockDevice())
  const read = util.promisify(fs.read)
  let position = range.offset ?? 0
  let toSkip = seekable ? 0 : (range.offset ?? 0)
  let sent = 0
  // No bigger than the range (a short HTTP body through res.write needs no 256 KiB), unless a
  // pipe's prefix is to be skipped: that goes a whole chunk per read.
  const buffer = Buffer.allocUnsafe(range.length === undefined || toSkip > 0 ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, range.length))
  for (;;) {
    if (signal?.aborted) throw attachBytes(abortError(signal), sent)
    const wanted = range.length === undefined ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, range.length - sent)
    if (wanted <= 0) break
    const { bytesRead } = await read(file.fd, buffer, 0, toSkip > 0 ? Math.min(toSkip, buffer.length) : wanted, seekable ? position : null)
    if (bytesRead === 0) break
    if (toSkip > 0) {
      toSkip -= bytesRead
      continue
    }
    if (signal?.aborted) throw attachBytes(abortError(signal), sent)
    // The buffer is reused for the next read; the writer gets its own copy. A stalled peer
    // must not hold an abort hostage: the wait for the write ends with the signal.
    try {
      await untilAborted(write(Buffer.from(buffer.subarray(0, bytesRead))), signal)
    } catch (error) {
      throw attachBytes(error, sent)
    }
    position += bytesRead
    sent += bytesRead
    if (onProgress) {
      try {
        onProgress(sent, total)
      } catch (error) {
        throw attachBytes(error, sent)
      }
    }
  }
  return sent
}

/**
 * The synchronous {@link streamRange}, for a seekable file: reads `range` without moving the
 * file position and hands each chunk to `write`, which returns how many of its bytes it took;
 * fewer than all ends the copy there (they are read again by the next call, at its offset).
 * Returns the bytes taken.
 */
export function pumpSync(fd: number, range: FixedRange, write: (chunk: Buffer, takenSoFar: number) => number): number {
  const buffer = Buffer.allocUnsafe(FALLBACK_CHUNK)
  let taken = 0
  for (;;) {
    const wanted = range.length === undefined ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, range.length - taken)
    if (wanted <= 0) return taken
    const read = fs.readSync(fd, buffer, 0, wanted, range.offset + taken)
    if (read === 0) return taken
    const took = write(buffer.subarray(0, read), taken)
    taken += took
    if (took < read) return taken
  }
}

/** `promise`, or a rejection as soon as `signal` aborts (with an AbortError, or the signal's reason when it is already an Error of ours). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, reason: (signal: AbortSignal) => unknown = abortError): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) {
    // Its outcome no longer matters, but a rejection nobody handles would crash the process
    // (a write to a socket destroyed meanwhile fails with ERR_SOCKET_CLOSED).
    promise.catch(() => {})
    return Promise.reject(reason(signal))
  }
  return new Promise<T>((resolve, reject) => {
    const stopListening = onAbort(signal, () => reject(reason(signal)))
    promise.then(resolve, reject).finally(stopListening)
  })
}

/**
 * Writes all of `chunk` to a raw fd: at `position` (a file), or at its current position
 * waiting out `EAGAIN` (a non-blocking socket or pipe).
 */
export async function writeAllToFd(fd: number, chunk: Buffer, { signal, position }: { signal?: AbortSignal; position?: number } = {}): Promise<void> {
  const write = (offset: number) =>
    new Promise<number>((resolve, reject) =>
      fs.write(fd, chunk, offset, chunk.length - offset, position === undefined ? null : position + offset, (error, bytesWritten) =>
        error ? reject(error) : resolve(bytesWritten),
      ),
    )
  let written = 0
  let backoff = 1
  while (written < chunk.length) {
    if (signal?.aborted) throw abortError(signal)
    try {
      written += await write(written)
      backoff = 1
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error
      // The fd is not ours to poll; wait a little, up to 50 ms, and try again.
      await new Promise((resolve) => setTimeout(resolve, backoff))
      backoff = Math.min(backoff * 2, 50)
    }
  }
}
