/** TransferReport and transferChannel: which path each sendFile/copyFile took. */
import * as diagnosticsChannel from 'node:diagnostics_channel'
import type * as fs from 'node:fs'
import type * as net from 'node:net'

import type { SystemError } from './errors.js'
import type { NativeMethod } from './native.js'

/** How the bytes of one `sendFile`/`copyFile` call moved. */
export interface TransferReport {
  operation: 'sendFile' | 'copyFile' | 'copyFileSync'
  /**
   * `sendfile`, `copy_file_range`: zero-copy, in the kernel. `read_write`: the native binding
   * copied through a buffer (a file the kernel cannot splice). `stream`: the JavaScript
   * fallback (TLS, pipes, /proc files, no native binding).
   */
  method: NativeMethod | 'stream'
  zeroCopy: boolean
  /** Why the fallback was taken, when it was. */
  reason?: string
  /** The socket or fd the bytes went to, or the destination of a copy. */
  target: net.Socket | number | string | URL | fs.promises.FileHandle
  bytes: number
  /**
   * For a `sendFile` to a socket with `sendfile`: the bytes sent at once from the event loop
   * (a small range already in the page cache, when it fits the socket's buffer), without a
   * native job; the rest, if any, went through the asynchronous driver.
   */
  inlineBytes?: number
  /** Set when the transfer failed. */
  error?: unknown
}

/** A listener of {@link transferChannel}. */
export type TransferListener = (report: TransferReport, name: string | symbol) => void

/**
 * The `node:diagnostics_channel` channel {@link transferChannel} publishes on, typed for its
 * messages: Node's own `Channel` type says `unknown`, so a typed listener would need a cast.
 */
export interface TransferChannel {
  readonly name: string | symbol
  readonly hasSubscribers: boolean
  subscribe(listener: TransferListener): void
  unsubscribe(listener: TransferListener): boolean
}

/** The name of {@link transferChannel}: `diagnostics_channel.subscribe('@zerocopy/sendfile:transfer', ...)` works too. */
export const TRANSFER_CHANNEL_NAME = '@zerocopy/sendfile:transfer'

const channel = diagnosticsChannel.channel(TRANSFER_CHANNEL_NAME)

/**
 * Every `sendFile` and `copyFile` publishes one {@link TransferReport} here when it settles,
 * through `node:diagnostics_channel` (channel name `'@zerocopy/sendfile:transfer'`), so a
 * test or a metrics hook can see whether bytes moved zero-copy or through the fallback, and why.
 *
 * @example
 * ```ts
 * transferChannel.subscribe((report: TransferReport) => console.log(report.method, report.zeroCopy))
 * ```
 */
export const transferChannel: TransferChannel = channel as unknown as TransferChannel

function publish(report: TransferReport): void {
  if (channel.hasSubscribers) channel.publish(report)
}

/** Settles a report when its operation ends, publishes it, and passes the result through. */
export async function reporting<T extends number>(report: TransferReport, operation: () => Promise<T>): Promise<T> {
  try {
    return await operation()
  } catch (error) {
    failed(report, error)
    throw error
  } finally {
    settled(report)
  }
}

/** {@link reporting} for synchronous operations. */
export function reportingSync<T extends number>(report: TransferReport, operation: () => T): T {
  try {
    return operation()
  } catch (error) {
    failed(report, error)
    throw error
  } finally {
    settled(report)
  }
}

function failed(report: TransferReport, error: unknown): void {
  report.error = error
  report.bytes = (error as SystemError).bytesSent ?? report.bytes
}

function settled(report: TransferReport): void {
  report.zeroCopy = report.method === 'sendfile' || report.method === 'copy_file_range'
  publish(report)
}

export function newReport(operation: TransferReport['operation'], target: TransferReport['target']): TransferReport {
  return { operation, method: 'none', zeroCopy: false, target, bytes: 0 }
}
