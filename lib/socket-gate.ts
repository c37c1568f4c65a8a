/** Sockets: socketFd, and the write gate that makes a sendFile a write in the socket's own queue. */
import * as net from 'node:net'
import * as tls from 'node:tls'

import { onAbort } from './abort.js'
import { type SystemError, abortError, codedError, invalidArgType } from './errors.js'
import { type WriteCallback, type WriteFn, type WritevFn, flushHeldHeader, handleFd, socketInternals } from './node-internals.js'
import { newReport, reporting } from './report.js'
import { nativeBinding } from './native.js'
import { type OpenedFile, openSource, rangeTotal, whyNotSendable } from './source.js'
import { streamRange, untilAborted } from './stream-fallback.js'
import { type SendFileJob, type SentInline, sendChoosingPath, sendInline } from './send-path.js'

/**
 * The kernel file descriptor behind a connected `net.Socket` (TCP or Unix), or -1 when it has
 * none that can be written directly (TLS, a socket on Windows, a socket not yet connected or
 * already closed).
 *
 * Node keeps this number on an undocumented handle, read in `node-internals`.
 *
 * @example
 * ```ts
 * net.createServer((socket) => { sendfileSync(socketFd(socket), fileFd, 0) })
 * ```
 */
export function socketFd(socket: net.Socket): number {
  if (!(socket instanceof net.Socket)) throw invalidArgType('socket', 'an instance of net.Socket', socket)
  // Bytes written to a TLS socket's fd would bypass the encryption.
  if (socket instanceof tls.TLSSocket) return -1
  const fd = handleFd(socket)
  return fd !== undefined && fd >= 0 ? fd : -1
}

// ---------------------------------------------------------------------------------------------
// The socket write gate: a sendFile is a write in the socket's own queue.
//
// Each sendFile writes an empty marker buffer through `socket.write`. Node's Writable hands
// writes to `_write`/`_writev` one at a time, in order, so when the marker reaches our
// `_write` every earlier write is in the kernel, and every later write (and `end()`) waits in
// the Writable's buffer until we call the marker's callback after the file: no reordering,
// no interleaving, and the socket stays usable afterwards.

interface SocketWriters {
  write: WriteFn
  writev: WritevFn | null
}

/** Marker buffer → the file transfer it stands for. */
const queuedSends = new WeakMap<object, (callback: () => void) => void>()

function isMarker(chunk: Buffer | string): boolean {
  return typeof chunk === 'object' && queuedSends.has(chunk)
}
const gatedSockets = new WeakMap<net.Socket, SocketWriters>()
/** The running transfer of a socket, so that destroying the socket cancels it at once. */
const runningSends = new WeakMap<net.Socket, (reason: unknown) => void>()

function gate(socket: net.Socket): SocketWriters {
  const existing = gatedSockets.get(socket)
  if (existing) return existing
  const internals = socketInternals(socket)
  const writers: SocketWriters = { write: internals._write, writev: internals._writev }
  const originalDestroy = internals._destroy
  internals._write = function (chunk, encoding, callback) {
    const send = typeof chunk === 'object' ? queuedSends.get(chunk) : undefined
    if (send === undefined) return writers.write.call(this, chunk, encoding, callback)
    queuedSends.delete(chunk as Buffer)
    send(() => callback())
  }
  if (writers.writev !== null) {
    const writev = writers.writev
    internals._writev = function (chunks, callback) {
      if (!chunks.some(({ chunk }) => isMarker(chunk))) return writev.call(this, chunks, callback)
      // Plain writes between markers go out in order, each run as one writev. A loop, not a
      // recursion: the marker of a send aborted while queued completes synchronously, and a
      // batch of thousands of them would otherwise nest a few stack frames each.
      let index = 0
      let looping = false
      let completedDuringLoop = false
      const next: WriteCallback = (error) => {
        if (error) return callback(error)
        if (looping) completedDuringLoop = true
        else writeFromIndex()
      }
      const writeFromIndex = () => {
        looping = true
        try {
          while (index < chunks.length) {
            completedDuringLoop = false
            const { chunk, encoding } = chunks[index]
            if (isMarker(chunk)) {
              index++
              internals._write.call(this, chunk, encoding, next)
            } else {
              const run: typeof chunks = []
              while (index < chunks.length && !isMarker(chunks[index].chunk)) run.push(chunks[index++])
              if (run.length === 1) writers.write.call(this, run[0].chunk, run[0].encoding, next)
              else writev.call(this, run, next)
            }
            // Not done yet (or failed): `next` carries on when it is.
            if (!completedDuringLoop) return
          }
        } finally {
          looping = false
        }
        callback()
      }
      writeFromIndex()
    }
  }
  internals._destroy = function (error, callback) {
    const running = runningSends.get(this)
    // Destroyed with an error (a reset that Node's reader saw first): that error is the reason.
    running?.(error ?? streamDestroyed())
    // A lost connection during a transfer is reported by the sendFile rejection alone, the same
    // whether the reader or the kernel transfer noticed it first.
    if (running !== undefined && isConnectionLost(error)) return originalDestroy.call(this, null, callback)
    return originalDestroy.call(this, error, callback)
  }
  gatedSockets.set(socket, writers)
  return writers
}

function streamDestroyed(): Error {
  return codedError(Error, 'ERR_STREAM_DESTROYED', 'The socket was destroyed before sendFile finished')
}

/** A connection the peer has dropped: sendFile rejects, and the socket is destroyed quietly. */
function isConnectionLost(error: unknown): boolean {
  const code = (error as SystemError | undefined)?.code
  return code === 'EPIPE' || code === 'ECONNRESET'
}

function whenConnected(socket: net.Socket): Promise<void> {
  if (!socket.connecting) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      socket.off('connect', onConnect).off('close', onClose).off('error', done)
      if (error) reject(error)
      else resolve()
    }
    const onConnect = () => done()
    const onClose = () => done(streamDestroyed())
    socket.once('connect', onConnect).once('close', onClose).once('error', done)
  })
}

export function sendFileToSocket(socket: net.Socket, job: SendFileJob): Promise<number> {
  if (socket.destroyed) throw streamDestroyed()
  if (socket.writableEnded) throw codedError(Error, 'ERR_STREAM_WRITE_AFTER_END', 'sendFile after the socket was ended')
  flushHeldHeader(socket)
  const now = sendAtOnce(socket, job)
  if (now !== undefined) return now
  const writers = gate(socket)
  const queued = (sendsQueued.get(socket) ?? 0) + 1
  sendsQueued.set(socket, queued)
  return new Promise<number>((resolve, reject) => {
    const marker = Buffer.alloc(0)
    let state: 'queued' | 'running' | 'abandoned' = 'queued'
    // Aborted while earlier writes still drain: settle now; the marker passes as a no-op later.
    const onAbortWhileQueued = () => {
      if (state !== 'queued') return
      state = 'abandoned'
      reject(abortError(job.signal as AbortSignal))
    }
    const stopListening = job.signal === undefined ? () => {} : onAbort(job.signal, onAbortWhileQueued)
    queuedSends.set(marker, (done) => {
      stopListening()
      if (state === 'abandoned') return done()
      state = 'running'
      runSocketSend(socket, job, writers).then(resolve, reject).finally(done)
    })
    socket.write(marker, (error) => {
      if (!error || state !== 'queued') return
      // The socket was destroyed (or errored) before our turn came.
      state = 'abandoned'
      stopListening()
      queuedSends.delete(marker)
      reject(error)
    })
  }).finally(() => {
    const left = (sendsQueued.get(socket) ?? 1) - 1
    if (left === 0) sendsQueued.delete(socket)
    else sendsQueued.set(socket, left)
  })
}

/** Per socket, the sendFile calls queued or running on its write gate. */
const sendsQueued = new WeakMap<net.Socket, number>()

/**
 * The fast way for a file the caller already opened (the HTTP layer's): when nothing is queued
 * on the socket (no write waiting, no sendFile queued or running), nothing can come before this
 * send or between its syscalls, so a small cached range goes out from here at once, without a
 * write through the gate. Settles the call when all of it went; otherwise `job` is left with
 * what remains (and the report it started), for the gate. Undefined: the gate takes it all.
 */
function sendAtOnce(socket: net.Socket, job: SendFileJob): Promise<number> | undefined {
  const file = job.opened
  const native = nativeBinding
  if (file === undefined || native === null || job.onProgress !== undefined || sendsQueued.has(socket)) return undefined
  if (socket.connecting || socket.writableLength > 0 || socket.writableCorked > 0) return undefined
  const fd = socketFd(socket)
  const total = rangeTotal(file.stats, job.range)
  if (fd < 0 || total <= 0 || whyNotSendable(file.stats) !== undefined) return undefined
  const report = newReport('sendFile', socket)
  let sent: SentInline | undefined
  try {
    sent = sendInline(native, fd, file, job.range.offset, total, job.head, report)
  } catch (error) {
    return reporting(report, () => {
      if (isConnectionLost(error)) socket.destroy()
      throw error
    })
  }
  if (sent === undefined) {
    // Not in the page cache (or too large): the async driver sends it; no second look.
    job.continued = { report, bytes: 0 }
    return undefined
  }
  if (sent.refusedBecause === undefined && sent.bytes === total) return reporting(report, async () => (report.bytes = total))
  // The socket is full (or the kernel refused): the rest waits its turn on the gate.
  job.range = { offset: job.range.offset + sent.bytes, length: total - sent.bytes }
  job.head = sent.head
  job.continued = { report, bytes: sent.bytes }
  return undefined
}

function runSocketSend(socket: net.Socket, job: SendFileJob, writers: SocketWriters): Promise<number> {
  const report = job.continued?.report ?? newReport('sendFile', socket)
  return reporting(report, async () => {
    let file: OpenedFile | undefined
    // While the file goes out, a socket error (a reset seen by the reader, a failed write in the
    // fallback) is reported by this promise: without a listener of its own it would crash the
    // process of a caller that relies on the rejection.
    const onSocketError = (error: Error) => runningSends.get(socket)?.(error)
    socket.on('error', onSocketError)
    try {
      if (job.signal?.aborted) throw abortError(job.signal)
      await whenConnected(socket)
      if (job.opened === undefined) file = await openSource(job.source)
      const opened = job.opened ?? (file as OpenedFile)
      if (socket.destroyed) throw streamDestroyed()
      return await sendChoosingPath(
        job,
        opened,
        {
          destination: socket,
          fd: socketFd(socket),
          whyNoFd: socket instanceof tls.TLSSocket ? 'the socket is a TLS socket' : 'the socket has no file descriptor',
          onNativeRun: (run) => runningSends.set(socket, (reason) => run.cancel(reason)),
          streamFallback: (hooks) => {
            const cancelled = new AbortController()
            runningSends.set(socket, (reason) => cancelled.abort(reason))
            return streamRange(opened, job.range, hooks, (chunk) => writeThrough(socket, writers, chunk, cancelled.signal))
          },
          head: job.head,
          writeHead: (head) => {
            const cancelled = new AbortController()
            runningSends.set(socket, (reason) => cancelled.abort(reason))
            return writeThrough(socket, writers, head, cancelled.signal)
          },
        },
        report,
      )
    } catch (error) {
      if (isConnectionLost(error)) socket.destroy()
      throw error
    } finally {
      socket.off('error', onSocketError)
      runningSends.delete(socket)
      await file?.close()
    }
  })
}

/**
 * Writes one chunk with the socket's own writer (encrypting it on a TLS socket), bypassing our
 * queue. A write that never completes (the socket destroyed under it) ends with `cancelled`.
 */
function writeThrough(socket: net.Socket, writers: SocketWriters, chunk: Buffer, cancelled: AbortSignal): Promise<void> {
  const written = new Promise<void>((resolve, reject) =>
    writers.write.call(socket, chunk, 'buffer' as BufferEncoding, (error) => (error ? reject(error) : resolve())),
  )
  return untilAborted(written, cancelled, (signal) => signal.reason)
}
