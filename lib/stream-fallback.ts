/** The fallback: the same bytes through JavaScript, with backpressure and abort. */
import * as fs from 'node:fs'
import * as util from 'node:util'

import { onAbort } from './abort.js'
import { abortError, attachBytes } from './errors.js'
import { TransferHooks } from './native.js'
import { Range } from './validate.js'
import { OpenedFile } from './source.js'

export const FALLBACK_CHUNK = 256 * 1024

/**
 * Reads `range` of `file` chunk by chunk and hands each to `write`, which resolves when the
 * chunk is on its way (backpressure). Reads with explicit positions, so a caller's file
 * position never moves, except from a pipe, which has none.
 */
export async function streamRange(file: OpenedFile, range: Range, hooks: TransferHooks, write: (chunk: Buffer) => Promise<void>): Promise<number> {
  const { signal, onProgress, total } = hooks
  const seekable = file.stats.isFile() || file.stats.isBlockDevice()
  const read = util.promisify(fs.read)
  let position = range.offset
  let toSkip = seekable ? 0 : range.offset
  let sent = 0
  const buffer = Buffer.allocUnsafe(FALLBACK_CHUNK)
  for (;;) {
    if (signal?.aborted) throw attachBytes(abortError(signal), sent)
    const wanted = range.length === undefined ? FALLBACK_CHUNK : Math.min(FALLBACK_CHUNK, range.length - sent)
    if (wanted <= 0) break
    const { bytesRead } = await read(file.fd, buffer, 0, toSkip > 0 ? Math.min(toSkip, FALLBACK_CHUNK) : wanted, seekable ? position : null)
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

/** `promise`, or a rejection as soon as `signal` aborts (with an AbortError, or the signal's reason when it is already an Error of ours). */
export function untilAborted<T>(promise: Promise<T>, signal: AbortSignal | undefined, reason: (signal: AbortSignal) => unknown = abortError): Promise<T> {
  if (signal === undefined) return promise
  if (signal.aborted) return Promise.reject(reason(signal))
  return new Promise<T>((resolve, reject) => {
    const stopListening = onAbort(signal, () => reject(reason(signal)))
    promise.then(resolve, reject).finally(stopListening)
  })
}

/** Writes all of `chunk` to a raw fd, waiting out `EAGAIN` on a non-blocking socket or pipe. */
export async function writeAllToFd(fd: number, chunk: Buffer, signal?: AbortSignal): Promise<void> {
  const write = (fd: number, buffer: Buffer, offset: number, length: number) =>
    new Promise<number>((resolve, reject) => fs.write(fd, buffer, offset, length, null, (error, bytesWritten) => (error ? reject(error) : resolve(bytesWritten))))
  let written = 0
  let backoff = 1
  while (written < chunk.length) {
    if (signal?.aborted) throw abortError(signal)
    try {
      written += await write(fd, chunk, written, chunk.length - written)
      backoff = 1
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error
      // The fd is not ours to poll; wait a little, up to 50 ms, and try again.
      await new Promise((resolve) => setTimeout(resolve, backoff))
      backoff = Math.min(backoff * 2, 50)
    }
  }
}
