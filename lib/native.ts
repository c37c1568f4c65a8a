/** The native binding: loading it, the one-time warning without it, and NativeRun, which drives one native transfer with abort and progress. */
import * as util from 'node:util'

import type * as Binding from '../binding.js'

import { onAbort } from './abort.js'
import { abortError, attachBytes, systemError } from './errors.js'

export type NativeBinding = typeof Binding

/** The npm package that carries this platform's binary, as napi-rs names them (`npm/<platform>`). */
export function platformPackage(): string {
  let abi = ''
  if (process.platform === 'linux') {
    // glibc reports its version in the process report; musl has none.
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header
    abi = header?.glibcVersionRuntime ? '-gnu' : '-musl'
  }
  return `@zerocopy/sendfile-${process.platform}-${process.arch}${abi}`
}

function packageVersion(): string {
  try {
    return (require('../package.json') as { version: string }).version
  } catch {
    return 'latest'
  }
}

/**
 * Why the binary did not load, in words a user can act on: which package carries it and the
 * command that installs it (napi-rs's own loader speaks of an npm bug, which is rarely the cause).
 */
function describeLoadError(cause: unknown): Error {
  const name = `${platformPackage()}@${packageVersion()}`
  const error = new Error(
    `The native binding of @zerocopy/sendfile for ${process.platform}-${process.arch} is not installed: it comes in the package ${name}, an optional dependency. ` +
      `Install it with \`npm install ${name}\` (or reinstall without --omit=optional / --no-optional); meanwhile transfers copy through JavaScript.`,
    { cause },
  )
  return error
}

function loadBinding(): { binding: NativeBinding | null; error: unknown } {
  try {
    return { binding: require('../binding.js') as NativeBinding, error: null }
  } catch (error) {
    return { binding: null, error: describeLoadError(error) }
  }
}

const loaded = loadBinding()
/** The generated napi-rs binding, or null where no binary could be loaded (then the JS fallback serves). */
export const nativeBinding: NativeBinding | null = loaded.binding
export const nativeLoadError: unknown = loaded.error

let warnedAboutFallback = false

/** Once per process: zero-copy is off because the native binding is missing. */
export function warnNotZeroCopy(): void {
  if (warnedAboutFallback) return
  warnedAboutFallback = true
  process.emitWarning(
    `The native sendfile binding for ${process.platform}-${process.arch} is not installed; @zerocopy/sendfile copies through JavaScript instead (not zero-copy).`,
    { type: 'ZeroCopyWarning', code: 'ZEROCOPY_NO_NATIVE', detail: nativeLoadError instanceof Error ? nativeLoadError.message : undefined },
  )
}

/** Whether the native zero-copy binding is loaded; when it is not, {@link nativeError} says why. */
export const isNative: boolean = nativeBinding !== null

/** Why the native binding could not be loaded, or `null` when it is loaded. */
export const nativeError: unknown = nativeLoadError

export interface TransferHooks {
  signal?: AbortSignal
  onProgress?: (bytes: number, total: number) => void
  total: number
  /** Called whenever bytes moved (a socket re-arms its idle timer here). */
  onMoved?: () => void
}

/** The mechanism a native call used: `sendfile`, `copy_file_range`, `read_write`, or `none` when none was tried. */
export type NativeMethod = `${Binding.Method}`

interface NativeResult {
  bytes: number
  method: NativeMethod
  /**
   * Set when the kernel refused before any byte (and the caller said it can take another
   * way): why, in words for a report. The rule of what counts as a refusal is the binding's.
   */
  refusedBecause?: string
}

/** Why the kernel refused, for a report; `syscall` names the call it refused. */
export function refusalReason(outcome: Pick<Binding.Outcome, 'refusal' | 'errno'>, syscall: string): string | undefined {
  const refusal: `${Binding.RefusalKind}` | undefined = outcome.refusal
  if (refusal === 'size_unknown') return 'the source reports size 0 (like /proc and /sys files): only read(2) finds its end'
  if (refusal === 'unsupported') return `the kernel answered ${util.getSystemErrorName(-(outcome.errno ?? 0))} to ${syscall}`
  return undefined
}

/**
 * The outcome of a synchronous native call: its bytes, or its error thrown in Node's shape. A
 * number is the binding's shorthand for an outcome that is only its bytes (`sendfileSync`, the
 * one call a loop makes per small chunk, answers so to spare building an object).
 */
export function bytesOf(outcome: Binding.Outcome | number, syscall: string, paths: { path?: string; dest?: string } = {}): number {
  if (typeof outcome === 'number') return outcome
  if (outcome.errno !== undefined) throw systemError(outcome.errno, syscall, { ...paths, bytesSent: outcome.bytes })
  return outcome.bytes
}

/**
 * Cancels a native transfer from JS: on abort, on a throwing progress callback, or when the
 * caller (the socket gate) asks. Rejects with the reason; resolves with the native outcome.
 */
export class NativeRun {
  private readonly control: Binding.TransferControl
  private cancelReason: unknown = undefined
  private lastReported = 0
  private settled = false

  constructor(
    native: NativeBinding,
    private readonly hooks: TransferHooks,
  ) {
    this.control = new native.TransferControl()
  }

  cancel(reason: unknown): void {
    if (this.cancelReason === undefined) this.cancelReason = reason
    this.control.cancel()
  }

  /**
   * Runs one native call to its end. `mayRefuse`: the caller can take another way when the
   * kernel refuses before any byte, so a refusal resolves with `refusedBecause` instead of
   * rejecting.
   */
  async run(
    start: (control: Binding.TransferControl, onProgress: ((bytes: number, total: number) => void) | undefined) => Promise<Binding.Outcome>,
    syscall: string,
    paths: { path?: string; dest?: string },
    mayRefuse = false,
  ): Promise<NativeResult> {
    const { signal, onProgress, onMoved } = this.hooks
    if (signal?.aborted) throw abortError(signal)
    const stopListening = signal === undefined ? undefined : onAbort(signal, () => this.cancel(abortError(signal)))
    try {
      const outcome = await start(this.control, onProgress || onMoved ? (bytes, total) => this.progress(bytes, total) : undefined)
      if (this.cancelReason !== undefined) throw attachBytes(this.cancelReason, outcome.bytes)
      const refusedBecause = mayRefuse ? refusalReason(outcome, syscall) : undefined
      if (refusedBecause !== undefined) return { bytes: 0, method: outcome.method, refusedBecause }
      const bytes = bytesOf(outcome, syscall, paths)
      this.progress(bytes, outcome.total ?? -1, true)
      // The final report is the caller's code too: if it threw, that is the outcome.
      if (this.cancelReason !== undefined) throw attachBytes(this.cancelReason, bytes)
      return { bytes, method: outcome.method }
    } finally {
      // Native progress calls still queued for the event loop arrive after this: ignored.
      this.settled = true
      stopListening?.()
    }
  }

  /** `total` from the binding when it found out (a copy by path), else -1: the hooks' total serves. */
  private progress(bytes: number, total: number, final = false): void {
    if (this.settled && !final) return
    this.hooks.onMoved?.()
    if (bytes <= this.lastReported || this.hooks.onProgress === undefined) return
    this.lastReported = bytes
    try {
      this.hooks.onProgress(bytes, total >= 0 ? total : this.hooks.total)
    } catch (error) {
      this.cancel(error)
    }
  }
}
