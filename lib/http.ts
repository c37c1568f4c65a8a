/**
 * Zero-copy HTTP file responses for `node:http`, `node:https` and the `node:http2`
 * compatibility API: {@link serveFile} answers one request with one file,
 * {@link createStaticHandler} serves a directory as a request handler or connect/Express
 * middleware. The headers go through the response object as usual. Over HTTP/1 the body goes
 * from the file to the socket with `sendfile(2)` through {@link sendFile}, queued behind the
 * headers in the socket's own write queue, so keep-alive and pipelining keep working (HTTPS falls
 * back to streams inside `sendFile`); when something between the response and the socket frames
 * or transforms the body (a compression middleware), the body goes through `res.write` instead.
 * Over HTTP/2 the stream sends the file itself (`respondWithFD`).
 */
import { setMaxListeners } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import * as path from 'node:path'
import * as mime from 'mime-types'

import { abortError, codedError, invalidArgType } from './errors.js'
import { sendFile } from './send-file.js'
import { FALLBACK_CHUNK, untilAborted } from './stream-fallback.js'
import { validateBoolean } from './validate.js'

/** Options of {@link serveFile} (and of every file {@link createStaticHandler} serves). */
export interface ServeFileOptions {
  /** `max-age` of the `Cache-Control` header, in seconds. Default 0 (caches must revalidate). */
  maxAge?: number
  /** Adds `immutable` to `Cache-Control`: for fingerprinted file names that never change. Default false. */
  immutable?: boolean
  /** Sends `Cache-Control: public, max-age=…`. Default true. */
  cacheControl?: boolean
  /** Sends `Last-Modified` and honours the date preconditions. Default true. */
  lastModified?: boolean
  /** Sends a weak `ETag` (`W/"<size hex>-<mtime ms hex>"`) and honours entity-tag preconditions. Default true. */
  etag?: boolean
  /** Sends `Accept-Ranges: bytes` and honours `Range`. False: `Accept-Ranges: none`, `Range` ignored. Default true. */
  acceptRanges?: boolean
  /**
   * `Content-Type` of the file. Default: a `Content-Type` already set on the response, else
   * the type of the file's extension (with `charset=utf-8` for text), else `application/octet-stream`.
   */
  contentType?: string
  /**
   * Extra headers for 200, 206 and 304 responses (they override the computed ones). Names and
   * values are checked up front as `setHeader` checks them (`ERR_INVALID_HTTP_TOKEN`,
   * `ERR_INVALID_CHAR`), so a bad one fails the call, not a response.
   */
  headers?: Record<string, string | number | string[]>
  /**
   * Aborts the response: before the headers the promise rejects and nothing is written; during
   * the body the connection (HTTP/2: the stream) is destroyed, so the client cannot take a short
   * body for a whole one.
   */
  signal?: AbortSignal
}

/** Options of {@link createStaticHandler}. */
export interface StaticOptions extends ServeFileOptions {
  /** File served for a directory URL (`/docs/` → `/docs/index.html`); false: directories are 404. Default `'index.html'`. */
  index?: string | false
  /**
   * Paths with a segment that starts with a dot (`/.env`, `/.git/config`): `'ignore'` treats
   * them as missing (404), `'deny'` answers 403, `'allow'` serves them. Default `'ignore'`.
   * Judged on the URL and on the real path of what would be opened, relative to the real root:
   * a symlink `env -> .env` is a dotfile too.
   */
  dotfiles?: 'ignore' | 'allow' | 'deny'
  /**
   * As middleware (a `next` is given): misses (404) and methods other than GET and HEAD (405)
   * call `next()` so later handlers can answer. False: they are answered here. Default true.
   */
  fallthrough?: boolean
}

/**
 * A connect/Express-style request handler; `next` is optional, so it is a `node:http` (or
 * `node:http2` compatibility API) request listener too.
 */
export type StaticHandler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, next?: (err?: unknown) => void) => void

type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest
type HeaderValue = string | number | string[]
type Headers = Record<string, HeaderValue>

/**
 * What this module uses of a response: members that `http.ServerResponse` and
 * `http2.Http2ServerResponse` share, so one code path answers both.
 */
interface OutgoingResponse extends NodeJS.EventEmitter {
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

interface Settings {
  cacheControl: string | undefined
  lastModified: boolean
  etag: boolean
  acceptRanges: boolean
  contentType: string | undefined
  headers: Headers
  signal: AbortSignal | undefined
}

interface OpenFile {
  fd: number
  stats: fs.Stats
  /** For the content type. */
  path: string
}

/** An answer that is not a file: a status, and the headers that go with it. */
interface Refusal {
  status: number
  headers?: Record<string, string>
}

/** The bytes of the file a 200 or 206 sends. */
interface BodyRange {
  start: number
  length: number
}

// ---------------------------------------------------------------------------------------------
// Options.

function settingsOf(value: unknown): Settings {
  if (value !== undefined && value !== null && typeof value !== 'object') throw invalidArgType('options', 'of type object', value)
  const options = (value ?? {}) as ServeFileOptions
  const { maxAge = 0, contentType, headers = {}, signal } = options
  if (typeof maxAge !== 'number' || !(maxAge >= 0) || !Number.isFinite(maxAge)) throw invalidArgType('options.maxAge', 'a finite number of seconds >= 0', maxAge)
  if (contentType !== undefined) {
    if (typeof contentType !== 'string') throw invalidArgType('options.contentType', 'of type string', contentType)
    http.validateHeaderValue('Content-Type', contentType)
  }
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArgType('options.signal', 'an instance of AbortSignal', signal)
  const immutable = validateBoolean(options.immutable, 'options.immutable', false)
  return {
    cacheControl: validateBoolean(options.cacheControl, 'options.cacheControl', true) ? `public, max-age=${Math.floor(maxAge)}${immutable ? ', immutable' : ''}` : undefined,
    lastModified: validateBoolean(options.lastModified, 'options.lastModified', true),
    etag: validateBoolean(options.etag, 'options.etag', true),
    acceptRanges: validateBoolean(options.acceptRanges, 'options.acceptRanges', true),
    contentType,
    headers: validHeaders(headers),
    signal,
  }
}

/** A copy of the `headers` option, each name and value checked as `setHeader` checks them. */
function validHeaders(headers: unknown): Headers {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw invalidArgType('options.headers', 'of type object', headers)
  const valid: Headers = {}
  for (const [name, value] of Object.entries(headers)) {
    http.validateHeaderName(name)
    if (Array.isArray(value)) {
      for (const item of value) {
        if (typeof item !== 'string') throw invalidArgType(`options.headers['${name}']`, 'a string, a number or an array of strings', value)
        http.validateHeaderValue(name, item)
      }
      valid[name] = [...value]
    } else {
      if (typeof value !== 'string' && typeof value !== 'number') throw invalidArgType(`options.headers['${name}']`, 'a string, a number or an array of strings', value)
      // As text: Node takes some headers (Content-Disposition) as strings only, and throws in writeHead otherwise.
      valid[name] = String(value)
      http.validateHeaderValue(name, valid[name] as string)
    }
  }
  return valid
}

// ---------------------------------------------------------------------------------------------
// Validators and preconditions (RFC 9110 §8.8, §13).

function weakEtag(stats: fs.Stats): string {
  return `W/"${stats.size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}"`
}

/** The entity tags of an `If-Match`/`If-None-Match` value; `'*'` for the wildcard. */
function entityTags(value: string): string[] | '*' {
  if (value.trim() === '*') return '*'
  // Tags are quoted and may contain commas, so they are matched rather than split.
  return value.match(/(?:W\/)?"[^"]*"/g) ?? []
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag
}

/** HTTP-dates in any of the three RFC 9110 forms; undefined for anything else. */
function httpDate(value: string | undefined): number | undefined {
  // Date.parse is lenient ('1' is 2001); insist on a time of day, which every HTTP-date has.
  if (value === undefined || !/\d{1,2}:\d{2}:\d{2}/.test(value)) return undefined
  const time = Date.parse(value)
  return Number.isNaN(time) ? undefined : time
}

interface Validators {
  etag: string | undefined
  /** Last-Modified in ms, truncated to whole seconds as the header carries it; undefined when not sent. */
  modified: number | undefined
}

/**
 * The preconditions in RFC 9110 §13.2.2 order: If-Match, else If-Unmodified-Since; then
 * If-None-Match, else If-Modified-Since. If-None-Match compares weakly, as the RFC says.
 * If-Match compares the exact tag, as nginx does: the RFC's strong comparison would never
 * match the weak tags this module sends, so `If-Match` with a tag fresh from a 200 would fail.
 */
function preconditions(req: AnyRequest, { etag, modified }: Validators): 200 | 304 | 412 {
  const safe = req.method === 'GET' || req.method === 'HEAD'
  const ifMatch = req.headers['if-match']
  if (ifMatch !== undefined) {
    const tags = entityTags(ifMatch)
    if (tags !== '*' && (etag === undefined || !tags.includes(etag))) return 412
  } else if (modified !== undefined) {
    const since = httpDate(req.headers['if-unmodified-since'])
    if (since !== undefined && modified > since) return 412
  }
  const ifNoneMatch = req.headers['if-none-match']
  if (ifNoneMatch !== undefined) {
    const tags = entityTags(ifNoneMatch)
    if (tags === '*' || (etag !== undefined && tags.some((tag) => opaque(tag) === opaque(etag)))) return safe ? 304 : 412
  } else if (safe && modified !== undefined) {
    const since = httpDate(req.headers['if-modified-since'])
    if (since !== undefined && modified <= since) return 304
  }
  return 200
}

/** Whether an `If-Range` (absent: true) still names this file: the exact ETag, or exactly its Last-Modified date. */
function ifRangeHolds(req: AnyRequest, { etag, modified }: Validators): boolean {
  const header = req.headers['if-range']
  if (header === undefined) return true
  const value = (Array.isArray(header) ? header.join(', ') : header).trim()
  if (value.startsWith('"') || value.startsWith('W/"')) return value === etag
  const date = httpDate(value)
  return date !== undefined && date === modified
}

// ---------------------------------------------------------------------------------------------
// Range (RFC 9110 §14).

type RangeAnswer = { start: number; end: number } | 'whole' | 'unsatisfiable'

/**
 * The byte range a `Range` value asks of a file of `size` bytes (`end` inclusive). A malformed
 * value, another unit, or several ranges answer `'whole'` (several ranges would need a
 * multipart/byteranges body; the whole file is always a correct answer). A value whose every
 * range starts past the end, including any range of an empty file, is `'unsatisfiable'`.
 */
function byteRange(value: string, size: number): RangeAnswer {
  const match = /^\s*bytes\s*=(.*)$/i.exec(value)
  if (match === null) return 'whole'
  const specs = match[1].split(',').map((spec) => spec.trim()).filter((spec) => spec !== '')
  if (specs.length === 0) return 'whole'
  const satisfiable: Array<{ start: number; end: number }> = []
  for (const spec of specs) {
    const parts = /^(\d*)-(\d*)$/.exec(spec)
    if (parts === null || (parts[1] === '' && parts[2] === '')) return 'whole'
    if (parts[1] === '') {
      // bytes=-N: the last N bytes.
      const suffix = Number(parts[2])
      if (suffix > 0 && size > 0) satisfiable.push({ start: Math.max(0, size - suffix), end: size - 1 })
      continue
    }
    const start = Number(parts[1])
    const last = parts[2] === '' ? Infinity : Number(parts[2])
    if (last < start) return 'whole'
    if (start < size) satisfiable.push({ start, end: Math.min(last, size - 1) })
  }
  if (satisfiable.length === 0) return 'unsatisfiable'
  return specs.length === 1 ? satisfiable[0] : 'whole'
}

// ---------------------------------------------------------------------------------------------
// Responding: the headers, and the body by one of three paths (sendfile to the socket, the
// HTTP/2 stream's own file response, or res.write).

const PLAIN = 'text/plain; charset=utf-8'

/**
 * Sets `headers` and writes the status. One `setHeader` each rather than `writeHead(status,
 * headers)`: Node keeps headers given to `writeHead` out of `getHeader` on a response without
 * earlier headers, and serveFile reads them back to see what a `writeHead` hook changed.
 */
function writeHead(res: OutgoingResponse, status: number, headers: Headers): void {
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
function refuse(req: AnyRequest, res: OutgoingResponse, { status, headers = {} }: Refusal): void {
  if (res.headersSent) {
    // Too late for a status line: the client must not mistake what it got for the answer.
    res.destroy()
    return
  }
  const body = `${status} ${httpStatusText(status)}\n`
  writeHead(res, status, { 'Content-Type': PLAIN, 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...headers })
  if (req.method === 'HEAD') res.end()
  else res.end(body)
}

const STATUS_TEXT: Record<number, string> = {
  301: 'Moved Permanently',
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  412: 'Precondition Failed',
  416: 'Range Not Satisfiable',
  500: 'Internal Server Error',
}

function httpStatusText(status: number): string {
  return STATUS_TEXT[status] ?? 'Error'
}

/** Errors that only mean the client is gone (or closed its side): nothing left to answer. */
function isClientGone(error: unknown): boolean {
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

// ERR_HTTP_* codes are Node's own; lib/errors.ts's codedError only takes the codes registered
// there, so these two are built here.
function httpError(code: 'ERR_HTTP_HEADERS_SENT' | 'ERR_HTTP_CONTENT_LENGTH_MISMATCH', message: string): Error & { code: string } {
  const error = new Error(message) as Error & { code: string }
  error.code = code
  return error
}

function shrankError(file: OpenFile, sent: number, length: number): Error {
  return httpError('ERR_HTTP_CONTENT_LENGTH_MISMATCH', `${file.path} shrank while it was being sent: ${sent} of ${length} bytes`)
}

function responseClosed(): Error {
  return codedError(Error, 'ERR_STREAM_DESTROYED', 'The response was closed before its body was sent')
}

/**
 * Per connection, the responses waiting for their turn on it, all settled by one 'close'
 * listener: a listener per queued response would pass the default limit of 10 with the 11th
 * pipelined request (MaxListenersExceededWarning).
 */
const waitingForTurn = new WeakMap<net.Socket, Set<() => void>>()

/** Calls `waiter` when `connection` closes; returns the function that stops waiting. */
function onConnectionClose(connection: net.Socket, waiter: () => void): () => void {
  let waiters = waitingForTurn.get(connection)
  if (waiters === undefined) {
    const created = new Set<() => void>()
    waitingForTurn.set(connection, created)
    connection.once('close', () => {
      waitingForTurn.delete(connection)
      for (const settle of created) settle()
    })
    waiters = created
  }
  const registered = waiters
  registered.add(waiter)
  return () => registered.delete(waiter)
}

/**
 * The response's socket once it is this response's turn to write: with pipelined requests
 * Node assigns the connection to one response at a time. Null when the connection closed first.
 */
function responseSocket(req: http.IncomingMessage, res: http.ServerResponse): Promise<net.Socket | null> {
  if (res.socket) return Promise.resolve(res.socket)
  const connection = req.socket
  if (connection.destroyed) return Promise.resolve(null)
  return new Promise((resolve) => {
    // Resolving inside 'socket' lets the caller continue only after assignSocket has flushed
    // anything the response had buffered.
    const done = (socket: net.Socket | null) => {
      res.off('socket', onSocket)
      stopWaiting()
      resolve(socket)
    }
    const onSocket = (socket: net.Socket) => done(socket)
    const stopWaiting = onConnectionClose(connection, () => done(null))
    res.on('socket', onSocket)
  })
}

/** `headers` overridden by `extra`, whatever the case of the names: an object with both would send both. */
function withExtra(headers: Headers, extra: Headers): Headers {
  const merged = { ...headers }
  for (const [name, value] of Object.entries(extra)) {
    for (const existing of Object.keys(merged)) if (existing.toLowerCase() === name.toLowerCase()) delete merged[existing]
    merged[name] = value
  }
  return merged
}

/** Answers `req` with an open regular file: preconditions, range, headers, then the body. */
async function respondWithFile(req: AnyRequest, res: http.ServerResponse | http2.Http2ServerResponse, file: OpenFile, settings: Settings): Promise<void> {
  const { stats } = file
  const size = stats.size
  const validators: Validators = {
    etag: settings.etag ? weakEtag(stats) : undefined,
    modified: settings.lastModified ? Math.floor(stats.mtimeMs / 1000) * 1000 : undefined,
  }
  const cacheHeaders: Record<string, string> = {}
  if (validators.etag !== undefined) cacheHeaders.ETag = validators.etag
  if (settings.lastModified) cacheHeaders['Last-Modified'] = stats.mtime.toUTCString()
  if (settings.cacheControl !== undefined) cacheHeaders['Cache-Control'] = settings.cacheControl

  const condition = preconditions(req, validators)
  if (condition === 412) return refuse(req, res, { status: 412 })
  if (condition === 304) {
    // No body and no Content-*: the client's cached copy stands; the validators refresh it.
    writeHead(res, 304, withExtra(cacheHeaders, settings.headers))
    res.end()
    return
  }

  const headers: Headers = { 'Accept-Ranges': settings.acceptRanges ? 'bytes' : 'none', ...cacheHeaders }
  let status = 200
  const body: BodyRange = { start: 0, length: size }
  const rangeValue = req.headers.range
  // GET is the only method with range semantics (RFC 9110 §14.2): HEAD gets the 200 headers.
  if (settings.acceptRanges && req.method === 'GET' && rangeValue !== undefined && ifRangeHolds(req, validators)) {
    const range = byteRange(rangeValue, size)
    if (range === 'unsatisfiable') return refuse(req, res, { status: 416, headers: { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes */${size}` } })
    if (range !== 'whole') {
      status = 206
      body.start = range.start
      body.length = range.end - range.start + 1
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`
    }
  }
  const contentType = settings.contentType ?? (res.hasHeader('Content-Type') ? undefined : mime.contentType(path.extname(file.path)) || 'application/octet-stream')
  if (contentType !== undefined) headers['Content-Type'] = contentType
  headers['Content-Length'] = body.length

  const allHeaders = withExtra(headers, settings.headers)

  if (req.method === 'HEAD' || body.length === 0) {
    writeHead(res, status, allHeaders)
    res.end()
    return
  }
  if (res instanceof http2.Http2ServerResponse) return sendOverHttp2(res, file, status, allHeaders, body, settings.signal)
  const socket = await responseSocket(req as http.IncomingMessage, res)
  if (socket === null) return
  if (settings.signal?.aborted) throw abortError(settings.signal)
  // The Content-Encoding as set: from serveFile's headers, else one the caller set earlier.
  const announced: Announced = { length: String(body.length), encoding: headerIn(allHeaders, 'Content-Encoding') ?? res.getHeader('Content-Encoding') }
  writeHead(res, status, allHeaders)
  if (bodyGoesRaw(res, socket, announced)) return sendToSocket(res, socket, file, body, settings.signal)
  return writeThroughResponse(res, file, body, settings.signal)
}

/** The value of header `name` in `headers`, whatever the case of its name. */
function headerIn(headers: Headers, name: string): HeaderValue | undefined {
  const lower = name.toLowerCase()
  for (const [key, value] of Object.entries(headers)) if (key.toLowerCase() === lower) return value
  return undefined
}

/** What serveFile's headers say of the body, as set, before any `writeHead` hook ran. */
interface Announced {
  length: string
  encoding: HeaderValue | undefined
}

/**
 * Whether sendfile may put the file on the socket as it is: only when the bytes on the wire are
 * exactly what serveFile's headers announce. That takes a real `net.Socket`, the response's own
 * `write` and `end` (a compression middleware replaces them to transform the body), and, after
 * every `writeHead` hook ran, the headers as serveFile set them: its Content-Length, no
 * Transfer-Encoding, the same Content-Encoding. Otherwise the client would read raw file bytes as
 * chunk sizes, or, on a kept-alive connection, as the next response.
 */
function bodyGoesRaw(res: http.ServerResponse, socket: net.Socket, announced: Announced): boolean {
  return (
    socket instanceof net.Socket &&
    res.write === http.ServerResponse.prototype.write &&
    res.end === http.ServerResponse.prototype.end &&
    String(res.getHeader('Content-Length')) === announced.length &&
    !res.hasHeader('Transfer-Encoding') &&
    res.getHeader('Content-Encoding') === announced.encoding
  )
}

/** The body with sendfile, queued on the socket behind the headers. */
async function sendToSocket(res: http.ServerResponse, socket: net.Socket, file: OpenFile, body: BodyRange, signal: AbortSignal | undefined): Promise<void> {
  // The headers must be in the socket's queue before sendFile queues the file behind them.
  res.flushHeaders()
  let sent: number
  try {
    sent = await sendFile(socket, file.fd, { offset: body.start, length: body.length, signal })
  } catch (error) {
    // Part of the body may be out: only closing the connection tells the client it is short.
    socket.destroy()
    if (isClientGone(error)) return
    throw error
  }
  if (sent !== body.length) {
    // The file shrank after fstat: Content-Length promised more, and keep-alive would misframe.
    socket.destroy()
    throw shrankError(file, sent, body.length)
  }
  res.end()
}

/**
 * The body through `res.write`, for a response that frames or transforms it itself (a
 * compression middleware, a wrapped `write`): chunk by chunk, waiting for 'drain' whenever
 * `write` asks to, so a slow client holds at most a chunk or two in memory.
 */
async function writeThroughResponse(res: OutgoingResponse, file: OpenFile, body: BodyRange, signal: AbortSignal | undefined): Promise<void> {
  let written: number
  try {
    written = await writeRange(res, file.fd, body, signal)
  } catch (error) {
    res.destroy()
    if (isClientGone(error)) return
    throw error
  }
  if (written !== body.length) {
    res.destroy()
    throw shrankError(file, written, body.length)
  }
  res.end()
}

/** Writes `body` of `fd` with `res.write`; resolves with the bytes written (fewer if the file shrank). */
async function writeRange(res: OutgoingResponse, fd: number, { start, length }: BodyRange, signal: AbortSignal | undefined): Promise<number> {
  const flow = watchFlow(res)
  try {
    let written = 0
    while (written < length) {
      if (signal?.aborted) throw abortError(signal)
      const chunk = Buffer.allocUnsafe(Math.min(FALLBACK_CHUNK, length - written))
      // Not raced with the signal: a read left running could land on the fd number after the
      // file is closed and it is reused; a read of a regular file ends promptly anyway.
      const bytesRead = await readAt(fd, chunk, start + written)
      if (bytesRead === 0) break
      if (signal?.aborted) throw abortError(signal)
      flow.throwIfClosed()
      // A fresh buffer per chunk: the response (or a gzip stream) may hold on to it.
      if (!res.write(bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead))) await untilAborted(flow.drained(), signal)
      written += bytesRead
    }
    return written
  } finally {
    flow.stop()
  }
}

function readAt(fd: number, buffer: Buffer, position: number): Promise<number> {
  return new Promise((resolve, reject) => fs.read(fd, buffer, 0, buffer.length, position, (error, bytesRead) => (error ? reject(error) : resolve(bytesRead))))
}

/**
 * The response's 'drain' and 'close', with one listener each for the whole body however many
 * chunks wait. (compression() sends `on('drain')` to its gzip stream but not `off`: the one
 * listener stays on that stream, which ends with the response.)
 */
function watchFlow(res: OutgoingResponse) {
  let closed = res instanceof http2.Http2ServerResponse ? res.stream.destroyed : (res as http.ServerResponse).destroyed
  let wake: (() => void) | undefined
  const onDrain = () => wake?.()
  const onClose = () => {
    closed = true
    wake?.()
  }
  res.on('drain', onDrain)
  res.on('close', onClose)
  return {
    throwIfClosed(): void {
      if (closed) throw responseClosed()
    },
    drained(): Promise<void> {
      return new Promise((resolve, reject) => {
        if (closed) return reject(responseClosed())
        wake = () => {
          wake = undefined
          if (closed) reject(responseClosed())
          else resolve()
        }
      })
    },
    stop(): void {
      res.off('drain', onDrain)
      res.off('close', onClose)
    },
  }
}

/**
 * HTTP/2: the stream answers with the file itself through `respondWithFD`, Node's own file
 * response, reading the fd as the flow-control window opens; `res.write` when something wrapped
 * the response's `writeHead`, `write` or `end`. Resolves once the stream has closed: until then
 * the fd is still being read and must stay open.
 */
async function sendOverHttp2(res: http2.Http2ServerResponse, file: OpenFile, status: number, headers: Headers, body: BodyRange, signal: AbortSignal | undefined): Promise<void> {
  const stream = res.stream
  // The client reset the stream before its answer: nothing left to answer.
  if (stream.destroyed || stream.closed) return
  if (signal?.aborted) throw abortError(signal)
  const prototype = http2.Http2ServerResponse.prototype
  if (res.writeHead !== prototype.writeHead || res.write !== prototype.write || res.end !== prototype.end) {
    writeHead(res, status, headers)
    return writeThroughResponse(res, file, body, signal)
  }
  // Headers set on the response earlier (a Content-Type, a middleware's) go out too, as with writeHead.
  const streamHeaders: http2.OutgoingHttpHeaders = { ...res.getHeaders() }
  for (const [name, value] of Object.entries(headers)) streamHeaders[name.toLowerCase()] = value
  streamHeaders[':status'] = status
  // For whoever logs the response afterwards: it went out past the compatibility layer.
  res.statusCode = status
  await untilStreamClosed(stream, signal, () => stream.respondWithFD(file.fd, streamHeaders, { offset: body.start, length: body.length }))
}

/**
 * Runs `respond` and settles when `stream` has closed: resolves when it completed or the client
 * reset it, rejects with AbortError when `signal` cancelled it, or with the stream's error.
 */
function untilStreamClosed(stream: http2.ServerHttp2Stream, signal: AbortSignal | undefined, respond: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let failure: unknown
    const onError = (error: Error) => {
      failure ??= error
    }
    const onAbort = () => {
      failure ??= abortError(signal as AbortSignal)
      stream.close(http2.constants.NGHTTP2_CANCEL)
    }
    const stop = () => {
      stream.off('error', onError)
      stream.off('close', onClose)
      signal?.removeEventListener('abort', onAbort)
    }
    const onClose = () => {
      stop()
      if (failure === undefined || isClientGone(failure)) resolve()
      else reject(failure)
    }
    stream.on('error', onError)
    stream.on('close', onClose)
    signal?.addEventListener('abort', onAbort, { once: true })
    try {
      respond()
    } catch (error) {
      // Nothing was sent (invalid headers for HTTP/2, say): the caller still can answer.
      stop()
      reject(error)
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Opening files.

// O_NONBLOCK: opening a FIFO must not wait for a writer; it has no effect on regular files.
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0)
/** For paths already resolved by realpath: a symlink swapped in afterwards is refused (ELOOP). */
const OPEN_RESOLVED_FLAGS = OPEN_FLAGS | (fs.constants.O_NOFOLLOW ?? 0)

/** Opening and resolving failures that mean "no such file here". */
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EISDIR'])
const FORBIDDEN = new Set(['EACCES', 'EPERM'])

/**
 * Opens a file (or a directory) and fstats it, or says which status answers for it. What is
 * not a regular file or a directory is 404 whatever open(2) said of it: a FIFO opens (without
 * waiting for a writer, O_NONBLOCK) and its fstat tells; a Unix socket cannot be opened at all
 * (ENXIO) and its stat tells. Unexpected errors (EMFILE, EIO) throw.
 */
async function openFile(file: string, flags: number): Promise<OpenFile | Refusal> {
  let fd: number
  try {
    fd = await new Promise<number>((resolve, reject) => fs.open(file, flags, (error, fd) => (error ? reject(error) : resolve(fd))))
  } catch (error) {
    const refusal = refusalFor(error) ?? (await notAFile(file, (flags & (fs.constants.O_NOFOLLOW ?? 0)) === 0))
    if (refusal === undefined) throw error
    return refusal
  }
  try {
    // fstat and close of an open read-only fd never wait for the disk, and on a busy server a
    // trip through the thread pool costs more than the syscall: both run synchronously here.
    return { fd, stats: fs.fstatSync(fd), path: file }
  } catch (error) {
    closeFile(fd)
    throw error
  }
}

/** 404 when `file` exists but is neither a regular file nor a directory; else undefined. */
async function notAFile(file: string, follow: boolean): Promise<Refusal | undefined> {
  try {
    const stats = follow ? await fs.promises.stat(file) : await fs.promises.lstat(file)
    return stats.isFile() || stats.isDirectory() ? undefined : { status: 404 }
  } catch {
    return undefined
  }
}

function closeFile(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // Closing a read-only fd has nothing to flush: a failure here loses nothing.
  }
}

/** The status an fs error answers (404, 403), or undefined for an unexpected one. */
function refusalFor(error: unknown): Refusal | undefined {
  const code = (error as NodeJS.ErrnoException).code ?? ''
  if (MISSING.has(code)) return { status: 404 }
  if (FORBIDDEN.has(code)) return { status: 403 }
  return undefined
}

function isRefusal(value: OpenFile | Refusal): value is Refusal {
  return 'status' in value
}

/**
 * Answers an HTTP request with a file, its body sent zero-copy with `sendfile(2)`:
 *
 * - 200 with `Content-Type` (from the extension; `charset=utf-8` for text), `Content-Length`,
 *   `Accept-Ranges: bytes`, `Last-Modified`, a weak `ETag` from size and mtime and
 *   `Cache-Control: public, max-age=<maxAge>[, immutable]`. HEAD: the same headers, no body.
 * - `Range` on GET: one range → 206 with `Content-Range` (`bytes=0-99`, `bytes=100-`,
 *   `bytes=-100`); no satisfiable range → 416 with `Content-Range: bytes *\/<size>`. Several
 *   ranges → 200 with the whole file (no multipart/byteranges: the simplest correct answer).
 *   A malformed `Range` is ignored (200). `If-Range` (an exact ETag or the Last-Modified date)
 *   that no longer matches → 200 with the whole file.
 * - Preconditions in RFC 9110 order: `If-Match` / `If-Unmodified-Since` failing → 412;
 *   `If-None-Match` (weak comparison, `*`, lists), else `If-Modified-Since` → 304 with the
 *   validators and `Cache-Control`, no body. `If-Match` and `If-Range` compare the exact tag.
 * - A missing path, a directory, or anything else that is not a regular file (a FIFO, a Unix
 *   socket, a device) → 404, without waiting on a FIFO; EACCES → 403.
 *
 * The file is opened once, and that fd is `fstat`ed and sent, so the headers always
 * describe the bytes sent; it is closed before the promise settles. The body is queued behind
 * the headers on the connection, which stays open for keep-alive; HTTPS falls back to streams.
 * sendfile writes to the socket only when the bytes on the wire are exactly the body the headers
 * announce: when a middleware replaced `res.write`/`res.end` (compression) or changed the framing
 * headers in a `writeHead` hook (dropped Content-Length, added Transfer-Encoding or
 * Content-Encoding), the same bytes go through `res.write` instead, with backpressure.
 * With the `node:http2` compatibility API the stream sends the file (`respondWithFD`), with
 * the same statuses and headers.
 *
 * Resolves when the response is complete, whatever its status, and also when the client went
 * away mid-way (the connection is destroyed: nothing is left to answer). Rejects only for
 * server-side failures: before the headers (EMFILE, EIO, invalid options or `headers` values,
 * headers already sent, `signal` aborted) nothing has been written and the caller answers,
 * typically 500; during the body (a read error, the file shrinking, `signal` aborted) the
 * connection has already been destroyed and `res.headersSent` is true.
 *
 * @example
 * ```ts
 * http.createServer((req, res) => {
 *   serveFile(req, res, './video.mp4', { maxAge: 3600 }).catch((error) => {
 *     if (!res.headersSent) res.writeHead(500).end()
 *     console.error(error)
 *   })
 * })
 * ```
 */
export async function serveFile(req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, path: string, options?: ServeFileOptions): Promise<void> {
  const settings = settingsOf(options)
  if (typeof path !== 'string') throw invalidArgType('path', 'of type string', path)
  if (res.headersSent) throw httpError('ERR_HTTP_HEADERS_SENT', 'Cannot serve a file after the response headers were sent')
  if (settings.signal?.aborted) throw abortError(settings.signal)
  if (path.includes('\0')) return refuse(req, res, { status: 404 })
  const opened = await openFile(path, OPEN_FLAGS)
  if (isRefusal(opened)) return refuse(req, res, opened)
  try {
    if (!opened.stats.isFile()) return refuse(req, res, { status: 404 })
    await respondWithFile(req, res, opened, settings)
  } finally {
    closeFile(opened.fd)
  }
}

// ---------------------------------------------------------------------------------------------
// The static handler.

type Decision = { kind: 'done' } | { kind: 'miss'; refusal: Refusal }

/**
 * How long a resolved root stands: a redeploy that swaps a symlinked root (`current -> rel2`)
 * is served within a second, at the cost of one realpath a second.
 */
const ROOT_VALIDITY_MS = 1000

/** The path of a request target (origin-form or absolute-form), without query or fragment; undefined if it has none. */
function targetPath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const end = url.search(/[?#]/)
  let pathname = end === -1 ? url : url.slice(0, end)
  if (!pathname.startsWith('/')) {
    // A proxy-style request: http://host/path.
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(pathname)
    if (authority === null) return undefined
    pathname = pathname.slice(authority[0].length) || '/'
  }
  return pathname
}

function isInside(root: string, file: string): boolean {
  return file === root || file.startsWith(root.endsWith(path.sep) ? root : root + path.sep)
}

/** `.env`, `.git`: a segment that starts with a dot (`.` and `..` are not names). */
function isDotSegment(segment: string): boolean {
  return segment.length > 1 && segment.startsWith('.')
}

/**
 * A request handler that serves the files under `root` with {@link serveFile}'s headers,
 * ranges and preconditions, for `http.createServer(handler)` (or `http2.createServer`) or as
 * connect/Express middleware (`app.use(handler)`; it uses `req.url`, which Express makes
 * relative to the mount point).
 *
 * - GET and HEAD only: other methods get 405 with `Allow: GET, HEAD`.
 * - The URL path is percent-decoded once; a malformed encoding → 400; a NUL byte → 400.
 * - Nothing outside `root` is ever served: a `..` segment (however encoded, `/` or `\`) → 403;
 *   the target's real path (symlinks resolved) must lie inside root's real path, else 404;
 *   the resolved path is opened with `O_NOFOLLOW`, so a file swapped for a symlink meanwhile
 *   is not followed (a parent directory swapped between the two steps is not caught: that
 *   takes write access inside root, and Node has no `openat2(RESOLVE_BENEATH)`).
 * - Dotfiles (a path segment starting with `.`, in the URL or in the real path of the file
 *   relative to the real root, so a symlink to a dotfile counts): 404 by default, see `dotfiles`.
 * - A directory: `/dir` → 301 to `/dir/`; `/dir/` → its `index` file if there is one, else 404.
 *   Anything else that is not a regular file (a FIFO, a Unix socket, a device) → 404.
 * - `root` is resolved again at least once a second, so a symlinked root switched by an atomic
 *   redeploy (`current -> rel2`) serves the new release without a restart. A `root` that does
 *   not exist answers like a missing file, and emits one `ZeroCopyWarning`
 *   (`ZEROCOPY_STATIC_ROOT_MISSING`) per handler; it is served as soon as it exists.
 * - Misses (404) and other methods (405) call `next()` when there is a `next` and
 *   `fallthrough` is on; 400 and 403 are always answered here.
 * - Unexpected errors (EMFILE, EIO, a root it may not search) before the headers go to
 *   `next(error)`, or become a 500 without `next`; after the headers, the connection is
 *   destroyed. The returned handler never throws and never leaves a rejected promise behind.
 *
 * @example
 * ```ts
 * const statics = createStaticHandler('./public', { maxAge: 600 })
 * http.createServer(statics).listen(8080)
 * // or, as middleware: app.use('/assets', createStaticHandler('./dist', { maxAge: 31536000, immutable: true }))
 * ```
 */
export function createStaticHandler(root: string, options?: StaticOptions): StaticHandler {
  if (typeof root !== 'string' || root === '') throw invalidArgType('root', 'a non-empty string', root)
  if (root.includes('\0')) throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The argument 'root' must be a string without null bytes. Received ${JSON.stringify(root)}`)
  const settings = settingsOf(options)
  const { index = 'index.html', dotfiles = 'ignore' } = options ?? {}
  const fallthrough = validateBoolean(options?.fallthrough, 'options.fallthrough', true)
  if (index !== false && (typeof index !== 'string' || index === '' || /[\\/\0]/.test(index) || index === '.' || index === '..')) throw invalidArgType('options.index', 'a file name or false', index)
  if (dotfiles !== 'ignore' && dotfiles !== 'allow' && dotfiles !== 'deny') throw invalidArgType('options.dotfiles', "'ignore', 'allow' or 'deny'", dotfiles)
  // One signal for every request: each transfer listens to it, more than 10 at once is normal.
  if (settings.signal !== undefined) setMaxListeners(0, settings.signal)
  const absoluteRoot = path.resolve(root)
  let resolvedRoot: { realPath: Promise<string | null>; at: number } | undefined
  let warnedMissingRoot = false

  /**
   * root's real path, or null while it does not exist; resolved again once the last resolution
   * is ROOT_VALIDITY_MS old, one resolution shared by every request meanwhile. An unexpected
   * failure (EACCES) is not kept: the next request tries again.
   */
  function currentRoot(): Promise<string | null> {
    const now = performance.now()
    if (resolvedRoot !== undefined && now - resolvedRoot.at < ROOT_VALIDITY_MS) return resolvedRoot.realPath
    const resolution = { at: now, realPath: fs.promises.realpath(absoluteRoot).catch(onRootFailure) }
    resolvedRoot = resolution
    return resolution.realPath

    function onRootFailure(error: unknown): null {
      if (refusalFor(error)?.status !== 404) {
        if (resolvedRoot === resolution) resolvedRoot = undefined
        throw error
      }
      if (!warnedMissingRoot) {
        warnedMissingRoot = true
        process.emitWarning(`The root of createStaticHandler, ${absoluteRoot}, does not exist (${(error as NodeJS.ErrnoException).code}): every request is answered as a missing file until it does.`, {
          type: 'ZeroCopyWarning',
          code: 'ZEROCOPY_STATIC_ROOT_MISSING',
        })
      }
      return null
    }
  }

  /** The real path of `file` when it exists inside root, else the refusal for it. */
  async function resolveInside(rootPath: string, file: string): Promise<string | Refusal> {
    let real: string
    try {
      real = await fs.promises.realpath(file)
    } catch (error) {
      const refusal = refusalFor(error)
      if (refusal === undefined) throw error
      return refusal
    }
    // Outside root (a symlink out of it): answered like a missing file, revealing nothing.
    return isInside(rootPath, real) ? real : { status: 404 }
  }

  /** The dotfile policy for a path's segments: undefined when they may be served. */
  function dotfileDecision(req: AnyRequest, res: OutgoingResponse, segments: string[]): Decision | undefined {
    if (dotfiles === 'allow' || !segments.some(isDotSegment)) return undefined
    if (dotfiles === 'deny') return refused(req, res, 403)
    return { kind: 'miss', refusal: { status: 404 } }
  }

  /** The dotfile policy for what would be opened: its real path, relative to the real root. */
  function realPathDecision(req: AnyRequest, res: OutgoingResponse, rootPath: string, real: string): Decision | undefined {
    return dotfileDecision(req, res, path.relative(rootPath, real).split(path.sep))
  }

  async function handle(req: AnyRequest, res: http.ServerResponse | http2.Http2ServerResponse): Promise<Decision> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return { kind: 'miss', refusal: { status: 405, headers: { Allow: 'GET, HEAD' } } }
    const rawPath = targetPath(req.url)
    if (rawPath === undefined) return refused(req, res, 400)
    let decoded: string
    try {
      decoded = decodeURIComponent(rawPath)
    } catch {
      return refused(req, res, 400)
    }
    if (decoded.includes('\0')) return refused(req, res, 400)
    // Both separators: a backslash is a separator on Windows and a trap everywhere.
    const segments = decoded.split(/[\\/]/)
    if (segments.includes('..')) return refused(req, res, 403)
    const asked = dotfileDecision(req, res, segments)
    if (asked !== undefined) return asked
    const rootPath = await currentRoot()
    if (rootPath === null) return { kind: 'miss', refusal: { status: 404 } }
    const wantsDirectory = decoded.endsWith('/') || decoded.endsWith('\\')
    const relative = segments.filter((segment) => segment !== '' && segment !== '.')
    const target = await resolveInside(rootPath, path.join(rootPath, ...relative))
    if (typeof target !== 'string') return { kind: 'miss', refusal: target }
    const opened = realPathDecision(req, res, rootPath, target)
    if (opened !== undefined) return opened
    const file = await openFile(target, OPEN_RESOLVED_FLAGS)
    if (isRefusal(file)) return { kind: 'miss', refusal: file }
    try {
      if (file.stats.isDirectory()) {
        if (index === false) return { kind: 'miss', refusal: { status: 404 } }
        if (!wantsDirectory) return redirectToDirectory(req, res)
        const indexTarget = await resolveInside(rootPath, path.join(target, index))
        if (typeof indexTarget !== 'string') return { kind: 'miss', refusal: indexTarget }
        return realPathDecision(req, res, rootPath, indexTarget) ?? (await serveRegular(req, res, indexTarget))
      }
      // /file.txt/ names a directory that does not exist.
      if (wantsDirectory || !file.stats.isFile()) return { kind: 'miss', refusal: { status: 404 } }
      await respondWithFile(req, res, file, settings)
      return { kind: 'done' }
    } finally {
      closeFile(file.fd)
    }
  }

  async function serveRegular(req: AnyRequest, res: http.ServerResponse | http2.Http2ServerResponse, file: string): Promise<Decision> {
    const opened = await openFile(file, OPEN_RESOLVED_FLAGS)
    if (isRefusal(opened)) return { kind: 'miss', refusal: opened }
    try {
      if (!opened.stats.isFile()) return { kind: 'miss', refusal: { status: 404 } }
      await respondWithFile(req, res, opened, settings)
      return { kind: 'done' }
    } finally {
      closeFile(opened.fd)
    }
  }

  return function staticHandler(req, res, next) {
    handle(req, res).then(
      (decision) => {
        if (decision.kind === 'done') return
        if (next !== undefined && fallthrough) return callNext(res, next)
        lastResort(res, () => refuse(req, res, decision.refusal))
      },
      (error: unknown) => {
        if (res.headersSent) {
          // The status line is out; only closing the connection can signal the failure.
          res.destroy()
          return
        }
        if (next !== undefined) return callNext(res, next, error)
        lastResort(res, () => refuse(req, res, { status: 500 }))
      },
    )
  }
}

/** Calls the next middleware; if it throws, answers 500 rather than leave a rejected promise. */
function callNext(res: OutgoingResponse, next: (err?: unknown) => void, error?: unknown): void {
  try {
    if (error === undefined) next()
    else next(error)
  } catch {
    if (res.headersSent) res.destroy()
    else
      lastResort(res, () => {
        writeHead(res, 500, { 'Content-Type': PLAIN })
        res.end('500 Internal Server Error\n')
      })
  }
}

/** Answers with `answer`; if even that throws (a broken `writeHead` hook), closes the connection: a handler must not throw. */
function lastResort(res: OutgoingResponse, answer: () => void): void {
  try {
    answer()
  } catch {
    res.destroy()
  }
}

function refused(req: AnyRequest, res: OutgoingResponse, status: number): Decision {
  refuse(req, res, { status })
  return { kind: 'done' }
}

/** `/dir` → `/dir/` (with the query), so relative links in its index resolve inside it. */
function redirectToDirectory(req: AnyRequest, res: OutgoingResponse): Decision {
  // Express rewrites req.url under a mount point; the browser needs the URL it asked for.
  const url = (req as AnyRequest & { originalUrl?: string }).originalUrl ?? req.url ?? '/'
  const end = url.search(/[?#]/)
  const pathname = targetPath(url) ?? '/'
  const query = end === -1 ? '' : url.slice(end).split('#')[0]
  // Leading slashes collapsed: '//evil.example/' would be a protocol-relative redirect.
  const location = `${pathname.replace(/^[\\/]+/, '/')}/${query}`
  refuse(req, res, { status: 301, headers: { Location: location } })
  return { kind: 'done' }
}
