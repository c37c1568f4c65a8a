/** Errors in the shapes Node's own APIs use: ERR_* codes, system errors with errno/syscall/path, AbortError. */
import * as util from 'node:util'

type NodeErrorCode =
  | 'ERR_INVALID_ARG_TYPE'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_INVALID_ARG_VALUE'
  | 'ERR_SENDFILE_UNSUPPORTED'
  | 'ERR_STREAM_DESTROYED'
  | 'ERR_STREAM_WRITE_AFTER_END'
  | 'ERR_HTTP_HEADERS_SENT'
  | 'ERR_HTTP_CONTENT_LENGTH_MISMATCH'
  | 'ABORT_ERR'

export function codedError<E extends Error, C extends NodeErrorCode>(ErrorClass: new (message: string) => E, code: C, message: string): E & { code: C } {
  const error = new ErrorClass(message) as E & { code: C }
  error.code = code
  return error
}

function describeReceived(value: unknown): string {
  if (value === null || value === undefined) return ` Received ${value}`
  if (typeof value === 'function') return ` Received function ${value.name || '<anonymous>'}`
  if (typeof value === 'object') {
    const name = (value as object).constructor?.name
    return name ? ` Received an instance of ${name}` : ` Received ${util.inspect(value, { depth: -1 })}`
  }
  let shown = util.inspect(value, { colors: false })
  if (shown.length > 28) shown = `${shown.slice(0, 25)}...`
  return ` Received type ${typeof value} (${shown})`
}

export function invalidArgType(name: string, expected: string, value: unknown): TypeError {
  return codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The "${name}" argument must be ${expected}.${describeReceived(value)}`)
}

/** Node's ERR_INVALID_ARG_VALUE: the right type, a value that is not allowed (`reason` says which are). */
export function invalidArgValue(name: string, value: unknown, reason: string): TypeError {
  let shown = util.inspect(value)
  if (shown.length > 128) shown = `${shown.slice(0, 128)}...`
  // Node says "property" for an option (`options.dotfiles`), "argument" for a parameter.
  return codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The ${name.includes('.') ? 'property' : 'argument'} '${name}' ${reason}. Received ${shown}`)
}

export function outOfRange(name: string, range: string, value: unknown): RangeError {
  return codedError(RangeError, 'ERR_OUT_OF_RANGE', `The value of "${name}" is out of range. It must be ${range}. Received ${util.inspect(value)}`)
}

/** A system error shaped like the ones `node:fs` throws (`code`, `errno`, `syscall`, `path`). */
export interface SystemError extends Error {
  code: string
  /** Negative, as Node reports it (`-errno`). */
  errno: number
  syscall: string
  path?: string
  dest?: string
  /** Bytes that went out before the error (zero-copy transfers only). */
  bytesSent?: number
}

/** errno → [code, description]; Node builds a new map on every call (~13 µs), so build it once. */
let systemErrors: Map<number, [string, string]> | undefined
function systemErrorMap(): Map<number, [string, string]> {
  return (systemErrors ??= util.getSystemErrorMap())
}

export function systemError(errno: number, syscall: string, extra: { path?: string; dest?: string; bytesSent?: number } = {}): SystemError {
  const uvErrno = -Math.abs(errno)
  const [code, description] = systemErrorMap().get(uvErrno) ?? [`Unknown system error ${uvErrno}`, 'unknown error']
  let message = `${code}: ${description}, ${syscall}`
  if (extra.path !== undefined) message += ` '${extra.path}'`
  if (extra.dest !== undefined) message += ` -> '${extra.dest}'`
  const error = new Error(message) as SystemError
  error.errno = uvErrno
  error.code = code
  error.syscall = syscall
  if (extra.path !== undefined) error.path = extra.path
  if (extra.dest !== undefined) error.dest = extra.dest
  if (extra.bytesSent !== undefined) error.bytesSent = extra.bytesSent
  return error
}

export function unsupported(message: string, cause?: unknown): Error & { code: 'ERR_SENDFILE_UNSUPPORTED' } {
  const error = codedError(Error, 'ERR_SENDFILE_UNSUPPORTED', message)
  if (cause !== undefined) (error as Error).cause = cause
  return error
}

export function abortError(signal: AbortSignal): Error {
  const error = codedError(Error, 'ABORT_ERR', 'The operation was aborted')
  error.name = 'AbortError'
  ;(error as Error).cause = signal.reason
  return error
}

/** The positive errno of a code name on this platform (`EISDIR` is 21 on Linux, 21 on macOS too, but `EAGAIN` is not). */
export function errnoOf(code: string): number {
  for (const [errno, [name]] of systemErrorMap()) if (name === code) return -errno
  return 0
}

export function attachBytes(error: unknown, bytes: number): unknown {
  if (error instanceof Error && (error as SystemError).bytesSent === undefined) (error as SystemError).bytesSent = bytes
  return error
}
