/** sendFile: a file, or a range of it, to a socket or an fd. */
import type * as fs from 'node:fs'
import * as net from 'node:net'

import { abortError, invalidArgType } from './errors.js'
import { validateBoolean, validateCallback, validateFd, validateFileSource, validateOptionsObject, validateRange, validateSignal } from './validate.js'
import { newReport, reporting } from './report.js'
import type { SendFileOptions } from './options.js'
import { type OpenedFile, openSource } from './source.js'
import { streamRange, writeAllToFd } from './stream-fallback.js'
import { type SendFileJob, sendChoosingPath } from './send-path.js'
import { sendFileToSocket } from './socket-gate.js'

/**
 * Sends a file (or a range of it) to a socket with the kernel's zero-copy `sendfile(2)`, and
 * resolves with the bytes sent. Works like Python's `socket.sendfile` and asyncio's
 * `loop.sendfile`, plus abort and progress:
 *
 * - `target`: a connected `net.Socket` (TCP or Unix) or a raw fd (socket, pipe or file).
 * - `source`: a path or `file:` URL (opened and closed here), a `FileHandle` or an fd (never
 *   closed, file position never moved).
 * - Writes made on the socket before this call go out first; writes made while it runs wait
 *   and follow the file. The socket stays usable afterwards.
 * - TLS sockets, pipes and files the kernel cannot splice (FIFOs, /proc) fall back to streams
 *   with backpressure unless `fallback: false`, which rejects with `ERR_SENDFILE_UNSUPPORTED`.
 *   {@link transferChannel} reports which path each call took.
 * - If the socket is destroyed during the transfer, the promise rejects and no byte goes to
 *   whatever reuses its fd number. A peer reset rejects with `ECONNRESET` or `EPIPE` and the
 *   socket is destroyed (without an 'error' event: the rejection is the report).
 *
 * @example
 * ```ts
 * net.createServer(async (socket) => {
 *   await sendFile(socket, './song.txt', { onProgress: (sent, total) => console.log(sent, total) })
 *   socket.end('bye\n')
 * })
 * ```
 */
export function sendFile(target: net.Socket | number, source: string | URL | fs.promises.FileHandle | number, options?: SendFileOptions): Promise<number> {
  try {
    if (!(target instanceof net.Socket) && typeof target !== 'number') throw invalidArgType('target', 'an instance of net.Socket or a file descriptor', target)
    const validSource = validateFileSource(source, 'source')
    const opts = validateOptionsObject(options)
    const job: SendFileJob = {
      source: validSource,
      range: validateRange(opts),
      signal: validateSignal(opts.signal),
      onProgress: validateCallback(opts.onProgress, 'options.onProgress'),
      fallback: validateBoolean(opts.fallback, 'options.fallback', true),
    }
    if (typeof target === 'number') validateFd(target, 'target')
    if (job.signal?.aborted) throw abortError(job.signal)
    return typeof target === 'number' ? sendFileToFd(target, job) : sendFileToSocket(target, job)
  } catch (error) {
    return Promise.reject(error)
  }
}

/**
 * For the HTTP layer: a range of a file it opened and fstat'ed, to a socket, queued like
 * {@link sendFile} and with `head` (a response's head, a multipart part's headers) sent just
 * before it, in the same segment when the range goes inline. Resolves with the file bytes sent.
 */
export function sendOpenedFile(
  socket: net.Socket,
  file: OpenedFile,
  range: { offset: number; length: number },
  signal: AbortSignal | undefined,
  head?: Buffer,
): Promise<number> {
  try {
    if (signal?.aborted) throw abortError(signal)
    return sendFileToSocket(socket, { source: file.fd, opened: file, range, signal, fallback: true, head })
  } catch (error) {
    return Promise.reject(error)
  }
}

function sendFileToFd(targetFd: number, job: SendFileJob): Promise<number> {
  const report = newReport('sendFile', targetFd)
  return reporting(report, async () => {
    const file = await openSource(job.source)
    try {
      return await sendChoosingPath(
        job,
        file,
        {
          destination: targetFd,
          fd: targetFd,
          streamFallback: (hooks) => streamRange(file, job.range, hooks, (chunk) => writeAllToFd(targetFd, chunk, { signal: job.signal })),
        },
        report,
      )
    } finally {
      await file.close()
    }
  })
}
