/** Choosing how a sendFile moves its bytes (zero-copy, or the stream fallback) and moving them. */
import type * as net from 'node:net'

import { systemError, unsupported } from './errors.js'
import { NativeRun, type TransferHooks, nativeBinding, refusalReason, warnNotZeroCopy } from './native.js'
import { refreshIdleTimer } from './node-internals.js'
import type { FileSource, FixedRange } from './validate.js'
import type { TransferReport } from './report.js'
import { type OpenedFile, nativeCount, rangeTotal, whyNotSendable } from './source.js'

export interface SendFileJob {
  source: FileSource
  /** The source already open and fstat'ed by the caller (who closes it), so not opened again. */
  opened?: OpenedFile
  /** Bytes to send ahead of the file (an HTTP response's head): see {@link SendTarget.head}. */
  head?: Buffer
  /**
   * Set when the socket gate already sent part of this job at once (see {@link sendInline}): the
   * report it started, and the body bytes that went then (`range` and `head` are what is left).
   */
  continued?: { report: TransferReport; bytes: number }
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
  /**
   * Bytes that go out before the file (an HTTP response's head), sent with it when it goes
   * inline, else with {@link SendTarget.writeHead} before the file. Only with a socket.
   */
  head?: Buffer
  /** Writes (what is left of) the head through the socket's own writer, ahead of the file. */
  writeHead?: (head: Buffer) => Promise<void>
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
  let head = target.head
  const writeHead = async () => {
    if (head !== undefined && head.length > 0) await target.writeHead?.(head)
    head = undefined
  }
  // Nothing to send: no path to take, nothing to report as zero-copy or fallback.
  if (total === 0) {
    await writeHead()
    return 0
  }
  let reason = whyNoZeroCopy(file, target)
  if (reason === undefined && nativeBinding !== null) {
    const native = nativeBinding
    report.method = 'sendfile'
    // A socket whose turn it is: a small cached range goes out now, from here (the binding
    // decides what is small and cached); what does not fit continues on the async driver.
    const before = job.continued?.bytes ?? 0
    let sentNow = 0
    // Tried at once here (or by the gate's fast path): the binding need not try again.
    const triedNow = socket !== undefined && total > 0
    if (triedNow && job.continued === undefined) {
      const now = sendInline(native, target.fd, file, job.range.offset, total, head, report)
      if (now !== undefined) {
        head = now.head
        sentNow = now.bytes
        reason = now.refusedBecause
        if (sentNow > 0) hooks.onMoved?.()
        if (reason === undefined && sentNow === total) {
          job.onProgress?.(total, total)
          return (report.bytes = total)
        }
      }
    }
    if (reason === undefined) {
      await writeHead()
      const rest: TransferHooks = sentNow === 0 ? hooks : { ...hooks, onProgress: job.onProgress && ((bytes) => job.onProgress?.(sentNow + bytes, total)) }
      const run = new NativeRun(native, rest)
      target.onNativeRun?.(run)
      const request = {
        outFd: target.fd,
        inFd: file.fd,
        offset: job.range.offset + sentNow,
        count: total > 0 ? total - sentNow : nativeCount(total, job.range),
        tryNow: !triedNow,
      }
      const result = await run.run((control, onProgress) => native.sendfileAsync(request, control, onProgress), 'sendfile', { path: file.path }, true)
      if (result.refusedBecause === undefined) return (report.bytes = before + sentNow + result.bytes)
      reason = result.refusedBecause
    }
  }
  await writeHead()
  report.reason = reason
  if (!job.fallback) {
    report.method = 'none'
    throw unsupported(`Zero-copy is impossible here (${reason}) and options.fallback is false.`)
  }
  report.method = 'stream'
  return (report.bytes = await target.streamFallback(hooks))
}

/** What {@link sendInline} sent: the body bytes, what is left of the head, or why the kernel refused. */
export interface SentInline {
  bytes: number
  head: Buffer | undefined
  refusedBecause?: string
}

/**
 * Sends `head` and then `total` bytes of `file` from `offset` to the non-blocking socket `fd`
 * at once, from the event loop, as far as the socket takes them without waiting, when the range
 * is small and in the page cache (the binding decides both; undefined when it did not try).
 * Records the bytes in `report.inlineBytes`; a failure throws in Node's shape.
 */
export function sendInline(
  native: NonNullable<typeof nativeBinding>,
  fd: number,
  file: OpenedFile,
  offset: number,
  total: number,
  head: Buffer | undefined,
  report: TransferReport,
): SentInline | undefined {
  const now = native.sendNowSync(fd, file.fd, head, offset, total)
  if (typeof now === 'number') {
    // All of it: the head and every byte of the range.
    report.method = 'sendfile'
    report.inlineBytes = now
    return { bytes: now, head: undefined }
  }
  if (now.skipped) return undefined
  report.method = 'sendfile'
  report.inlineBytes = now.body
  const refusedBecause = refusalReason(now, 'sendfile')
  if (refusedBecause === undefined && now.errno !== undefined && now.errno !== null)
    throw systemError(now.errno, 'sendfile', { path: file.path, bytesSent: now.body })
  return { bytes: now.body, head: head?.subarray(now.head), refusedBecause }
}
