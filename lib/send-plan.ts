/** Deciding how a sendFile moves its bytes (zero-copy or the stream fallback) and running it. */
import * as net from 'node:net'
import * as tls from 'node:tls'

import { SystemError, unsupported } from './errors.js'
import { CHUNK_SIZE, FALLBACK_ERRNOS, NativeBinding, NativeRun, TransferHooks, nativeBinding, warnNotZeroCopy } from './native.js'
import { FileSource, Range } from './validate.js'
import { TransferReport } from './report.js'
import { OpenedFile, REPORTS_SIZE_ZERO, isEmptyFrom, nativeCount, rangeTotal, whyNotSendable } from './source.js'

export interface SendFileJob {
  source: FileSource
  range: Range
  signal?: AbortSignal
  onProgress?: (bytesSent: number, total: number) => void
  fallback: boolean
}

/** Why this transfer cannot be zero-copy, or undefined when it can. */
function whyNoZeroCopy(file: OpenedFile, targetFd: number, target: net.Socket | number): string | undefined {
  if (nativeBinding === null) {
    warnNotZeroCopy()
    return 'the native binding is not loaded'
  }
  if (targetFd < 0) return target instanceof tls.TLSSocket ? 'the socket is a TLS socket' : 'the socket has no file descriptor'
  return whyNotSendable(file.stats)
}

function unsupportedBeforeAnyByte(reason: string): Error {
  return unsupported(`Zero-copy is impossible here (${reason}) and options.fallback is false.`)
}

/**
 * Sends `file` to `targetFd` with the kernel, falling back to `streamFallback` when the
 * kernel refuses before the first byte (and fallback is allowed). Fills in `report`.
 */
export async function sendPlanned(
  job: SendFileJob,
  file: OpenedFile,
  target: net.Socket | number,
  targetFd: number,
  report: TransferReport,
  register: (run: NativeRun) => void,
  streamFallback: (hooks: TransferHooks) => Promise<number>,
): Promise<number> {
  const total = rangeTotal(file.stats, job.range)
  // Only a socket with an idle timeout needs to hear of every burst; for the rest, skipping the
  // callbacks keeps the event loop free.
  const idleTimeout = target instanceof net.Socket && (target.timeout ?? 0) > 0
  const hooks: TransferHooks = { signal: job.signal, onProgress: job.onProgress, total, onMoved: idleTimeout ? () => refreshIdleTimer(target) : undefined }
  // Nothing to send: no path to take, nothing to report as zero-copy or fallback.
  if (total === 0) return 0
  let reason = whyNoZeroCopy(file, targetFd, target)
  if (reason === undefined) {
    const native = nativeBinding as NativeBinding
    const run = new NativeRun(native, hooks)
    register(run)
    report.method = 'sendfile'
    try {
      const count = nativeCount(total, job.range)
      const result = await run.run((control, onProgress) => native.sendfileAsync(targetFd, file.fd, job.range.offset, count, CHUNK_SIZE, control, onProgress), 'sendfile', { path: file.path })
      return (report.bytes = result.bytes)
    } catch (error) {
      const systemCode = (error as SystemError).code
      if (!(FALLBACK_ERRNOS.has(systemCode) && (error as SystemError).bytesSent === 0)) throw error
      reason = `the kernel answered ${systemCode} to sendfile`
    }
  }
  report.reason = reason
  if (!job.fallback) {
    report.method = 'none'
    // A truly empty file has nothing to send, zero-copy or not.
    if (reason === REPORTS_SIZE_ZERO && (await isEmptyFrom(file.fd, job.range.offset))) return 0
    throw unsupportedBeforeAnyByte(reason)
  }
  report.method = 'stream'
  return (report.bytes = await streamFallback(hooks))
}

/**
 * Bytes the kernel sends bypass the stream, so the socket's `setTimeout` idle timer would
 * fire on a transfer that is still moving; stream writes re-arm it through this same method.
 */
function refreshIdleTimer(socket: net.Socket): void {
  ;(socket as unknown as { _unrefTimer?: () => void })._unrefTimer?.()
}
