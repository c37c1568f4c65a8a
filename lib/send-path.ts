/** Choosing how a sendFile moves its bytes (zero-copy, or the stream fallback) and moving them. */
import type * as net from 'node:net'

import { unsupported } from './errors.js'
import { NativeRun, type TransferHooks, nativeBinding, warnNotZeroCopy } from './native.js'
import { refreshIdleTimer } from './node-internals.js'
import type { FileSource, FixedRange } from './validate.js'
import type { TransferReport } from './report.js'
import { type OpenedFile, nativeCount, rangeTotal, whyNotSendable } from './source.js'

export interface SendFileJob {
  source: FileSource
  range: FixedRange
  signal?: AbortSignal
  onProgress?: (bytesSent: number, total: number) => void
  fallback: boolean
}

/** Where a sendFile's bytes go, and how to reach it either way. */
export interface SendTarget {
  /** The socket, or the raw fd the caller passed. */
  destination: net.Socket | number
  /** The fd the kernel writes to, or -1 when there is none (TLS, a socket without a handle). */
  fd: number
  /** Why there is no fd, when there is none. */
  whyNoFd?: string
  /** Hears of the native run, so that destroying the socket can cancel it. */
  onNativeRun?: (run: NativeRun) => void
  /** The same bytes through JavaScript, with backpressure. */
  streamFallback: (hooks: TransferHooks) => Promise<number>
}

/** Why this transfer cannot even try zero-copy, or undefined when it can. */
function whyNoZeroCopy(file: OpenedFile, target: SendTarget): string | undefined {
  if (nativeBinding === null) {
    warnNotZeroCopy()
    return 'the native binding is not loaded'
  }
  if (target.fd < 0) return target.whyNoFd ?? 'the target has no file descriptor'
  return whyNotSendable(file.stats)
}

/**
 * Sends `file` to `target` with the kernel, falling back to the target's stream path when the
 * kernel refuses before the first byte (and fallback is allowed). Fills in `report`.
 */
export async function sendChoosingPath(job: SendFileJob, file: OpenedFile, target: SendTarget, report: TransferReport): Promise<number> {
  const total = rangeTotal(file.stats, job.range)
  // Only a socket with an idle timeout needs to hear of every burst; for the rest, skipping the
  // callbacks keeps the event loop free.
  const socket = typeof target.destination === 'number' ? undefined : target.destination
  const idleTimeout = socket !== undefined && (socket.timeout ?? 0) > 0
  const hooks: TransferHooks = { signal: job.signal, onProgress: job.onProgress, total, onMoved: idleTimeout ? () => refreshIdleTimer(socket) : undefined }
  // Nothing to send: no path to take, nothing to report as zero-copy or fallback.
  if (total === 0) return 0
  let reason = whyNoZeroCopy(file, target)
  if (reason === undefined && nativeBinding !== null) {
    const native = nativeBinding
    const run = new NativeRun(native, hooks)
    target.onNativeRun?.(run)
    report.method = 'sendfile'
    const request = { outFd: target.fd, inFd: file.fd, offset: job.range.offset, count: nativeCount(total, job.range) }
    const result = await run.run((control, onProgress) => native.sendfileAsync(request, control, onProgress), 'sendfile', { path: file.path }, true)
    if (result.refusedBecause === undefined) return (report.bytes = result.bytes)
    reason = result.refusedBecause
  }
  report.reason = reason
  if (!job.fallback) {
    report.method = 'none'
    throw unsupported(`Zero-copy is impossible here (${reason}) and options.fallback is false.`)
  }
  report.method = 'stream'
  return (report.bytes = await target.streamFallback(hooks))
}
