/** Argument validation, with Node's error codes and messages. */
import type * as fs from 'node:fs'
import { fileURLToPath } from 'node:url'

import { codedError, invalidArgType, invalidArgValue, outOfRange } from './errors.js'

/** Largest offset or count accepted: every byte position a JS number can name exactly. */
export const MAX_POSITION = Number.MAX_SAFE_INTEGER
/** File descriptors are non-negative C ints. */
const MAX_FD = 2 ** 31 - 1

/** Like Node's own `validateInteger`: not a number → ERR_INVALID_ARG_TYPE; NaN, a fraction, ±Infinity or out of bounds → ERR_OUT_OF_RANGE. */
export function validateInteger(value: unknown, name: string, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isInteger(value)) throw outOfRange(name, 'an integer', value)
  if (!(value >= 0 && value <= max)) throw outOfRange(name, `>= 0 && <= ${max}`, value)
  return value
}

/** Like Node's `validateNumber` with a minimum, finite too: not a number → ERR_INVALID_ARG_TYPE; NaN, ±Infinity or below `min` → ERR_OUT_OF_RANGE. */
export function validateFiniteNumber(value: unknown, name: string, min: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'of type number', value)
  if (!Number.isFinite(value)) throw outOfRange(name, 'a finite number', value)
  if (value < min) throw outOfRange(name, `>= ${min}`, value)
  return value
}

export function validateFd(value: unknown, name: string): number {
  return validateInteger(value, name, MAX_FD)
}

/** `null`/`undefined` → `undefined`: "read from the file position and advance it". */
export function validateOffset(value: unknown, name = 'offset'): number | undefined {
  return value === null || value === undefined ? undefined : validateInteger(value, name, MAX_POSITION)
}

/** `undefined` or 0 → `undefined`: "until end of file" (the public API's 0, as in BSD's sendfile); any other count is exact. */
export function validateCount(value: unknown, name = 'count'): number | undefined {
  return value === undefined ? undefined : validateInteger(value, name, MAX_POSITION) || undefined
}

export interface Range {
  /** Undefined: from the file position, which then advances (the low-level calls only). */
  offset: number | undefined
  /** Undefined: to end of file. */
  length: number | undefined
}

/** A range that always names its first byte (every helper's: they never move a caller's file position). */
export interface FixedRange extends Range {
  offset: number
}

export function validateOptionsObject(options: unknown, name = 'options'): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw invalidArgType(name, 'of type object', options)
  return options as Record<string, unknown>
}

export function validateRange(options: Record<string, unknown>): FixedRange {
  return {
    offset: options.offset === undefined ? 0 : validateInteger(options.offset, 'options.offset', MAX_POSITION),
    length: options.length === undefined ? undefined : validateInteger(options.length, 'options.length', MAX_POSITION),
  }
}

export function validateSignal(value: unknown): AbortSignal | undefined {
  if (value === undefined) return undefined
  if (!(value instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', value)
  return value
}

export function validateCallback<F extends (...args: never[]) => unknown>(value: unknown, name: string): F | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'function') throw invalidArgType(name, 'of type function', value)
  return value as F
}

export function validateBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalidArgType(name, 'of type boolean', value)
  return value
}

export function validateString(value: unknown, name: string): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'of type string', value)
  return value
}

/** Like Node's `validateOneOf`: anything not in `allowed`, whatever its type, → ERR_INVALID_ARG_VALUE. */
export function validateOneOf<T extends string | number | boolean>(value: unknown, name: string, allowed: readonly T[]): T {
  if (!(allowed as readonly unknown[]).includes(value))
    throw invalidArgValue(name, value, `must be one of: ${allowed.map((item) => (typeof item === 'string' ? `'${item}'` : String(item))).join(', ')}`)
  return value as T
}

export type FileSource = string | URL | fs.promises.FileHandle | number

export function isFileHandle(value: unknown): value is fs.promises.FileHandle {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as fs.promises.FileHandle).fd === 'number' &&
    typeof (value as fs.promises.FileHandle).stat === 'function' &&
    typeof (value as fs.promises.FileHandle).close === 'function'
  )
}

export function validateFileSource(value: unknown, name: string, allowHandle = true): FileSource {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) throw invalidArgValue(name, value, 'must be a string, Uint8Array, or URL without null bytes')
    return value
  }
  if (value instanceof URL) {
    if (value.protocol !== 'file:') throw codedError(TypeError, 'ERR_INVALID_ARG_TYPE', `The URL must be of scheme file. Received ${value.href}`)
    return value
  }
  if (typeof value === 'number') return validateFd(value, name)
  if (allowHandle && isFileHandle(value)) return value
  throw invalidArgType(
    name,
    allowHandle ? 'of type string or an instance of URL or FileHandle, or a file descriptor' : 'of type string or an instance of URL, or a file descriptor',
    value,
  )
}

export function pathOf(source: string | URL): string {
  return source instanceof URL ? fileURLToPath(source) : source
}
