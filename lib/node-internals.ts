/**
 * The one module that reaches into Node's private socket and HTTP internals. Each use says why
 * no public API serves; everything else in the package goes through these functions, so a
 * change in Node is a change here.
 */
import type * as http from 'node:http'
import type * as net from 'node:net'

export type WriteCallback = (error?: Error | null) => void
export type WriteFn = (this: net.Socket, chunk: Buffer | string, encoding: BufferEncoding, callback: WriteCallback) => void
export type WritevFn = (this: net.Socket, chunks: Array<{ chunk: Buffer | string; encoding: BufferEncoding }>, callback: WriteCallback) => void
export type DestroyFn = (this: net.Socket, error: Error | null, callback: (error: Error | null) => void) => void

/**
 * A socket's Writable implementation hooks. A sendFile must be a write in the socket's own
 * queue (after earlier writes, before later ones and `end()`), and must hear of the socket's
 * destruction before its fd closes; Node offers no public hook for either, so the socket gate
 * wraps these (`_write`, `_writev`, `_destroy` are the stream implementer's API, called by
 * `stream.Writable` itself).
 */
export interface SocketInternals {
  _write: WriteFn
  _writev: WritevFn | null
  _destroy: DestroyFn
}

export function socketInternals(socket: net.Socket): SocketInternals {
  return socket as unknown as SocketInternals
}

/**
 * The fd of a socket's libuv handle. Node keeps it on the undocumented `socket._handle.fd`
 * and has no public accessor (`net.Socket` exposes no fd at all).
 */
export function handleFd(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd
  return typeof fd === 'number' ? fd : undefined
}

/**
 * Bytes the kernel sends bypass the stream, so the socket's `setTimeout` idle timer would fire
 * on a transfer that is still moving. Stream writes re-arm it through `_unrefTimer`, which has
 * no public equivalent (`setTimeout` again would also reset a timeout the caller changed).
 */
export function refreshIdleTimer(socket: net.Socket): void {
  ;(socket as unknown as { _unrefTimer?: () => void })._unrefTimer?.()
}

/**
 * An `http.ServerResponse` keeps the header block that `writeHead()` built until its first body
 * write. To the socket that header is a write made before a sendFile, so it goes out first.
 * No public API serves: only the socket's `_httpMessage` leads from a socket to the response
 * that owns it, and `res.headersSent` is already true while the header is still held back
 * (Node's `_headerSent` says whether it went out).
 */
export function flushHeldHeader(socket: net.Socket): void {
  const response = (socket as unknown as { _httpMessage?: (http.OutgoingMessage & { _headerSent?: boolean }) | null })._httpMessage
  if (response?.headersSent && response._headerSent === false) response.flushHeaders()
}

/**
 * Takes the header block an `http.ServerResponse` still holds (see {@link flushHeldHeader}) to
 * send it together with the body: one segment instead of two for a small response. Marked as
 * sent, so Node does not send it again; undefined when there is none to take (no `writeHead`
 * yet, or already sent). No public API hands out the header block: `_header` holds it as Node
 * built it (latin1, as Node writes it) and `_headerSent` says whether it went out.
 */
export function takeHeldHeader(res: http.ServerResponse): Buffer | undefined {
  const response = res as http.ServerResponse & { _header?: unknown; _headerSent?: boolean }
  if (response._headerSent !== false || typeof response._header !== 'string') return undefined
  response._headerSent = true
  return Buffer.from(response._header, 'latin1')
}
