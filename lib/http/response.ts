/**
 * Writing a response's head: the headers as set (and put back when the head fails), and the
 * short text answers that are not a file (refusals). Shared by `node:http` and the `node:http2`
 * compatibility API.
 */
import * as http from 'node:http'
import type * as http2 from 'node:http2'

import { codedError } from '../errors.js'

export type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest
export type AnyResponse = http.ServerResponse | http2.Http2ServerResponse
export type HeaderValue = string | number | string[]
export type Headers = Record<string, HeaderValue>

/**
 * What this package uses of a response: members that `http.ServerResponse` and
 * `http2.Http2ServerResponse` share, so one code path answers both.
 */
export interface OutgoingResponse extends NodeJS.EventEmitter {
  readonly headersSent: boolean
  statusCode: number
  setHeader(name: string, value: HeaderValue): unknown
  getHeader(name: string): HeaderValue | undefined
  getHeaders(): http.OutgoingHttpHeaders
  hasHeader(name: string): boolean
  removeHeader(name: string): void
  writeHead(statusCode: number): unknown
  write(chunk: Uint8Array): boolean
  end(): unknown
  end(chunk: string): unknown
  destroy(error?: Error): unknown
}

/** An answer that is not a file: a status, and the headers that go with it. */
export interface Refusal {
  status: number
  headers?: Record<string, string>
}

/** Whether an answer is a refusal rather than what was asked for (an open file, a path, a target). */
export function isRefusal<T>(value: T | Refusal): value is Refusal {
  return typeof value === 'object' && value !== null && 'status' in value
}

export const PLAIN = 'text/plain; charset=utf-8'

/**
 * Sets `headers` and writes the status. One `setHeader` each rather than `writeHead(status,
 * headers)`: Node keeps headers given to `writeHead` out of `getHeader` on a response without
 * earlier headers, and serveFile reads them back to see what a `writeHead` hook changed.
 */
export function writeHead(res: OutgoingResponse, status: number, headers: Headers): void {
  const restore = setHeaders(res, headers)
  try {
    res.writeHead(status)
  } catch (error) {
    restore()
    throw error
  }
}

/**
 * Sets `headers` on the response; returns what puts back the headers the caller had, for when
 * the response fails before it is sent (a `writeHead` hook or Node throwing), so that the caller
 * can still answer (a 500) without serveFile's headers on it.
 */
function setHeaders(res: OutgoingResponse, headers: Headers): () => void {
  const previous = new Map<string, HeaderValue | undefined>()
  const restore = () => {
    if (res.headersSent) return
    for (const [name, value] of previous) {
      if (value === undefined) res.removeHeader(name)
      else res.setHeader(name, value)
    }
  }
  try {
    for (const [name, value] of Object.entries(headers)) {
      previous.set(name, res.getHeader(name))
      res.setHeader(name, value)
    }
  } catch (error) {
    restore()
    throw error
  }
  return restore
}

/** A short text answer (404, 412, …). HEAD gets the same headers without the body. */
export function refuse(req: AnyRequest, res: OutgoingResponse, { status, headers = {} }: Refusal): void {
  if (res.headersSent) {
    // Too late for a status line: the client must not mistake what it got for the answer.
    res.destroy()
    return
  }
  const body = `${status} ${http.STATUS_CODES[status] ?? 'Error'}\n`
  writeHead(res, status, { 'Content-Type': PLAIN, 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...headers })
  if (req.method === 'HEAD') res.end()
  else res.end(body)
}

/** `headers` overridden by `extra`, whatever the case of the names: an object with both would send both. */
export function withExtra(headers: Headers, extra: Headers): Headers {
  const merged = { ...headers }
  for (const [name, value] of Object.entries(extra)) {
    for (const existing of Object.keys(merged)) if (existing.toLowerCase() === name.toLowerCase()) delete merged[existing]
    merged[name] = value
  }
  return merged
}

/** The value of header `name` in `headers`, whatever the case of its name. */
export function headerIn(headers: Headers, name: string): HeaderValue | undefined {
  const lower = name.toLowerCase()
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === lower) return value
  return undefined
}

/** Errors that only mean the client is gone (or closed its side): nothing left to answer. */
export function isClientGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return (
    code === 'EPIPE' ||
    code === 'ECONNRESET' ||
    code === 'ERR_STREAM_DESTROYED' ||
    code === 'ERR_STREAM_WRITE_AFTER_END' ||
    // The HTTP/2 peer reset the stream with an error code, or the session went away under it.
    code === 'ERR_HTTP2_STREAM_ERROR' ||
    code === 'ERR_HTTP2_STREAM_CANCEL'
  )
}

export function headersSentError(): Error {
  return codedError(Error, 'ERR_HTTP_HEADERS_SENT', 'Cannot serve a file after the response headers were sent')
}

/** The file had fewer bytes to send than the Content-Length its fstat gave. */
export function shrankError(file: string, sent: number, length: number): Error {
  return codedError(Error, 'ERR_HTTP_CONTENT_LENGTH_MISMATCH', `${file} shrank while it was being sent: ${sent} of ${length} bytes`)
}

export function responseClosed(): Error {
  return codedError(Error, 'ERR_STREAM_DESTROYED', 'The response was closed before its body was sent')
}
