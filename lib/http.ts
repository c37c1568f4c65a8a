/**
 * Zero-copy HTTP file responses for `node:http`: {@link serveFile} answers one request with one
 * file, {@link createStaticHandler} serves a directory as a request handler or connect/Express
 * middleware. The headers go through `http.ServerResponse` as usual; the body goes from the file
 * to the socket with `sendfile(2)` through {@link sendFile}, queued behind the headers in the
 * socket's own write queue, so keep-alive and pipelining keep working. HTTPS falls back to
 * streams inside `sendFile`.
 */
import { setMaxListeners } from 'node:events'
import * as fs from 'node:fs'
import type * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'
import * as mime from 'mime-types'

import { abortError } from './errors.js'
import { sendFile } from './send-file.js'

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
  /** Extra headers for 200, 206 and 304 responses (they override the computed ones). */
  headers?: Record<string, string | number | string[]>
  /**
   * Aborts the response: before the headers the promise rejects and nothing is written; during
   * the body the connection is destroyed (the client must not take a short body for a whole one).
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
   */
  dotfiles?: 'ignore' | 'allow' | 'deny'
  /**
   * As middleware (a `next` is given): misses (404) and methods other than GET and HEAD (405)
   * call `next()` so later handlers can answer. False: they are answered here. Default true.
   */
  fallthrough?: boolean
}

/** A connect/Express-style request handler; `next` is optional, so it is a `node:http` listener too. */
export type StaticHandler = (req: http.IncomingMessage, res: http.ServerResponse, next?: (err?: unknown) => void) => void

interface Settings {
  cacheControl: string | undefined
  lastModified: boolean
  etag: boolean
  acceptRanges: boolean
  contentType: string | undefined
  headers: Record<string, string | number | string[]>
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

// ---------------------------------------------------------------------------------------------
// Options.

function typeError(name: string, expected: string, value: unknown): TypeError {
  const error = new TypeError(`The "${name}" option must be ${expected}. Received ${typeof value === 'string' ? `'${value}'` : String(value)}`) as TypeError & { code: string }
  error.code = 'ERR_INVALID_ARG_TYPE'
  return error
}

function optionalBoolean(value: unknown, name: string, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw typeError(name, 'of type boolean', value)
  return value
}

function settingsOf(options: ServeFileOptions | undefined): Settings {
  if (options === undefined || options === null) options = {}
  if (typeof options !== 'object') throw typeError('options', 'of type object', options)
  const { maxAge = 0, contentType, headers = {}, signal } = options
  if (typeof maxAge !== 'number' || !(maxAge >= 0) || !Number.isFinite(maxAge)) throw typeError('maxAge', 'a finite number of seconds >= 0', maxAge)
  if (contentType !== undefined && typeof contentType !== 'string') throw typeError('contentType', 'of type string', contentType)
  if (typeof headers !== 'object' || headers === null) throw typeError('headers', 'of type object', headers)
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw typeError('signal', 'an instance of AbortSignal', signal)
  const immutable = optionalBoolean(options.immutable, 'immutable', false)
  return {
    cacheControl: optionalBoolean(options.cacheControl, 'cacheControl', true) ? `public, max-age=${Math.floor(maxAge)}${immutable ? ', immutable' : ''}` : undefined,
    lastModified: optionalBoolean(options.lastModified, 'lastModified', true),
    etag: optionalBoolean(options.etag, 'etag', true),
    acceptRanges: optionalBoolean(options.acceptRanges, 'acceptRanges', true),
    contentType,
    headers,
    signal,
  }
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
function preconditions(req: http.IncomingMessage, { etag, modified }: Validators): 200 | 304 | 412 {
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
function ifRangeHolds(req: http.IncomingMessage, { etag, modified }: Validators): boolean {
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
// Responding.

const PLAIN = 'text/plain; charset=utf-8'

/** A short text answer (404, 412, …). HEAD gets the same headers without the body. */
function refuse(req: http.IncomingMessage, res: http.ServerResponse, { status, headers = {} }: Refusal): void {
  if (res.headersSent) {
    // Too late for a status line: the client must not mistake what it got for the answer.
    res.destroy()
    return
  }
  const body = `${status} ${httpStatusText(status)}\n`
  res.writeHead(status, { 'Content-Type': PLAIN, 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...headers })
  res.end(req.method === 'HEAD' ? undefined : body)
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
  return code === 'EPIPE' || code === 'ECONNRESET' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END'
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
      connection.off('close', onClose)
      resolve(socket)
    }
    const onSocket = (socket: net.Socket) => done(socket)
    const onClose = () => done(null)
    res.on('socket', onSocket)
    connection.on('close', onClose)
  })
}

function headersSentError(): Error {
  const error = new Error('Cannot serve a file after the response headers were sent') as Error & { code: string }
  error.code = 'ERR_HTTP_HEADERS_SENT'
  return error
}

/** `headers` overridden by `extra`, whatever the case of the names: an object with both would send both. */
function withExtra(headers: Record<string, string | number | string[]>, extra: Record<string, string | number | string[]>): Record<string, string | number | string[]> {
  const merged = { ...headers }
  for (const [name, value] of Object.entries(extra)) {
    for (const existing of Object.keys(merged)) if (existing.toLowerCase() === name.toLowerCase()) delete merged[existing]
    merged[name] = value
  }
  return merged
}

/** Answers `req` with an open regular file: preconditions, range, headers, then the body with sendfile. */
async function respondWithFile(req: http.IncomingMessage, res: http.ServerResponse, file: OpenFile, settings: Settings): Promise<void> {
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
    res.writeHead(304, withExtra(cacheHeaders, settings.headers))
    res.end()
    return
  }

  const headers: Record<string, string | number | string[]> = { 'Accept-Ranges': settings.acceptRanges ? 'bytes' : 'none', ...cacheHeaders }
  let status = 200
  let start = 0
  let length = size
  const rangeValue = req.headers.range
  // GET is the only method with range semantics (RFC 9110 §14.2): HEAD gets the 200 headers.
  if (settings.acceptRanges && req.method === 'GET' && rangeValue !== undefined && ifRangeHolds(req, validators)) {
    const range = byteRange(rangeValue, size)
    if (range === 'unsatisfiable') return refuse(req, res, { status: 416, headers: { 'Accept-Ranges': 'bytes', 'Content-Range': `bytes */${size}` } })
    if (range !== 'whole') {
      status = 206
      start = range.start
      length = range.end - range.start + 1
      headers['Content-Range'] = `bytes ${range.start}-${range.end}/${size}`
    }
  }
  const contentType = settings.contentType ?? (res.hasHeader('Content-Type') ? undefined : mime.contentType(path.extname(file.path)) || 'application/octet-stream')
  if (contentType !== undefined) headers['Content-Type'] = contentType
  headers['Content-Length'] = length

  const allHeaders = withExtra(headers, settings.headers)

  if (req.method === 'HEAD' || length === 0) {
    res.writeHead(status, allHeaders)
    res.end()
    return
  }
  const socket = await responseSocket(req, res)
  if (socket === null) return
  if (settings.signal?.aborted) throw abortError(settings.signal)
  res.writeHead(status, allHeaders)
  // The headers must be in the socket's queue before sendFile queues the file behind them.
  res.flushHeaders()
  let sent: number
  try {
    sent = await sendFile(socket, file.fd, { offset: start, length, signal: settings.signal })
  } catch (error) {
    // Part of the body may be out: only closing the connection tells the client it is short.
    socket.destroy()
    if (isClientGone(error)) return
    throw error
  }
  if (sent !== length) {
    // The file shrank after fstat: Content-Length promised more, and keep-alive would misframe.
    socket.destroy()
    const error = new Error(`${file.path} shrank while it was being sent: ${sent} of ${length} bytes`) as Error & { code: string }
    error.code = 'ERR_HTTP_CONTENT_LENGTH_MISMATCH'
    throw error
  }
  res.end()
}

// O_NONBLOCK: opening a FIFO must not wait for a writer; it has no effect on regular files.
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0)
/** For paths already resolved by realpath: a symlink swapped in afterwards is refused (ELOOP). */
const OPEN_RESOLVED_FLAGS = OPEN_FLAGS | (fs.constants.O_NOFOLLOW ?? 0)

/** Opening and resolving failures that mean "no such file here". */
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EISDIR'])
const FORBIDDEN = new Set(['EACCES', 'EPERM'])

/** Opens a file, or says which status answers for it; unexpected errors (EMFILE, EIO) throw. */
async function openFile(file: string, flags: number): Promise<OpenFile | Refusal> {
  let fd: number
  try {
    fd = await new Promise<number>((resolve, reject) => fs.open(file, flags, (error, fd) => (error ? reject(error) : resolve(fd))))
  } catch (error) {
    return refusalFor(error)
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

function closeFile(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // Closing a read-only fd has nothing to flush: a failure here loses nothing.
  }
}

function refusalFor(error: unknown): Refusal {
  const code = (error as NodeJS.ErrnoException).code ?? ''
  if (MISSING.has(code)) return { status: 404 }
  if (FORBIDDEN.has(code)) return { status: 403 }
  throw error
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
 * - A missing path or a directory (or anything but a regular file) → 404; EACCES → 403.
 *
 * The file is opened once, and that fd is `fstat`ed and sent, so the headers always
 * describe the bytes sent; it is closed before the promise settles. The body is queued behind
 * the headers on the connection, which stays open for keep-alive; HTTPS falls back to streams.
 *
 * Resolves when the response is complete, whatever its status, and also when the client went
 * away mid-way (the connection is destroyed: nothing is left to answer). Rejects only for
 * server-side failures: before the headers (EMFILE, EIO, invalid options, headers already
 * sent, `signal` aborted) nothing has been written and the caller answers, typically 500;
 * during the body (a read error, the file shrinking, `signal` aborted) the connection has
 * already been destroyed and `res.headersSent` is true.
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
export async function serveFile(req: http.IncomingMessage, res: http.ServerResponse, path: string, options?: ServeFileOptions): Promise<void> {
  const settings = settingsOf(options)
  if (typeof path !== 'string') throw typeError('path', 'of type string', path)
  if (res.headersSent) throw headersSentError()
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

/**
 * A request handler that serves the files under `root` with {@link serveFile}'s headers,
 * ranges and preconditions, for `http.createServer(handler)` or as connect/Express middleware
 * (`app.use(handler)`; it uses `req.url`, which Express makes relative to the mount point).
 *
 * - GET and HEAD only: other methods get 405 with `Allow: GET, HEAD`.
 * - The URL path is percent-decoded once; a malformed encoding → 400; a NUL byte → 400.
 * - Nothing outside `root` is ever served: a `..` segment (however encoded, `/` or `\`) → 403;
 *   the target's real path (symlinks resolved) must lie inside root's real path, else 404;
 *   the resolved path is opened with `O_NOFOLLOW`, so a file swapped for a symlink meanwhile
 *   is not followed (a parent directory swapped between the two steps is not caught: that
 *   takes write access inside root, and Node has no `openat2(RESOLVE_BENEATH)`).
 * - Dotfiles (a path segment starting with `.`): 404 by default, see `dotfiles`.
 * - A directory: `/dir` → 301 to `/dir/`; `/dir/` → its `index` file if there is one, else 404.
 * - Misses (404) and other methods (405) call `next()` when there is a `next` and
 *   `fallthrough` is on; 400 and 403 are always answered here.
 * - Unexpected errors (EMFILE, EIO) before the headers go to `next(error)`, or become a 500
 *   without `next`; after the headers, the connection is destroyed. The returned handler
 *   never throws and never leaves a rejected promise behind.
 *
 * @example
 * ```ts
 * const statics = createStaticHandler('./public', { maxAge: 600 })
 * http.createServer(statics).listen(8080)
 * // or, as middleware: app.use('/assets', createStaticHandler('./dist', { maxAge: 31536000, immutable: true }))
 * ```
 */
export function createStaticHandler(root: string, options?: StaticOptions): StaticHandler {
  if (typeof root !== 'string' || root === '') throw typeError('root', 'a non-empty string', root)
  const settings = settingsOf(options)
  const { index = 'index.html', dotfiles = 'ignore' } = options ?? {}
  const fallthrough = optionalBoolean(options?.fallthrough, 'fallthrough', true)
  if (index !== false && (typeof index !== 'string' || index === '' || /[\\/]/.test(index) || index === '.' || index === '..')) throw typeError('index', 'a file name or false', index)
  if (dotfiles !== 'ignore' && dotfiles !== 'allow' && dotfiles !== 'deny') throw typeError('dotfiles', "'ignore', 'allow' or 'deny'", dotfiles)
  // One signal for every request: each transfer listens to it, more than 10 at once is normal.
  if (settings.signal !== undefined) setMaxListeners(0, settings.signal)
  const absoluteRoot = path.resolve(root)
  let realRoot: Promise<string> | undefined

  /** root's real path, resolved once; a failure is retried by the next request. */
  function resolveRoot(): Promise<string> {
    realRoot ??= fs.promises.realpath(absoluteRoot).catch((error: unknown) => {
      realRoot = undefined
      throw error
    })
    return realRoot
  }

  /** The real path of `file` when it exists inside root, else the refusal for it. */
  async function resolveInside(rootPath: string, file: string): Promise<string | Refusal> {
    let real: string
    try {
      real = await fs.promises.realpath(file)
    } catch (error) {
      return refusalFor(error)
    }
    // Outside root (a symlink out of it): answered like a missing file, revealing nothing.
    return isInside(rootPath, real) ? real : { status: 404 }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<Decision> {
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
    if (segments.some((segment) => segment.length > 1 && segment.startsWith('.'))) {
      if (dotfiles === 'deny') return refused(req, res, 403)
      if (dotfiles === 'ignore') return { kind: 'miss', refusal: { status: 404 } }
    }
    const rootPath = await resolveRoot()
    const wantsDirectory = decoded.endsWith('/') || decoded.endsWith('\\')
    const relative = segments.filter((segment) => segment !== '' && segment !== '.')
    const target = await resolveInside(rootPath, path.join(rootPath, ...relative))
    if (typeof target !== 'string') return { kind: 'miss', refusal: target }
    const opened = await openFile(target, OPEN_RESOLVED_FLAGS)
    if (isRefusal(opened)) return { kind: 'miss', refusal: opened }
    try {
      if (opened.stats.isDirectory()) {
        if (index === false) return { kind: 'miss', refusal: { status: 404 } }
        if (!wantsDirectory) return redirectToDirectory(req, res)
        const indexTarget = await resolveInside(rootPath, path.join(target, index))
        if (typeof indexTarget !== 'string') return { kind: 'miss', refusal: indexTarget }
        return await serveRegular(req, res, indexTarget)
      }
      // /file.txt/ names a directory that does not exist.
      if (wantsDirectory || !opened.stats.isFile()) return { kind: 'miss', refusal: { status: 404 } }
      await respondWithFile(req, res, opened, settings)
      return { kind: 'done' }
    } finally {
      closeFile(opened.fd)
    }
  }

  async function serveRegular(req: http.IncomingMessage, res: http.ServerResponse, file: string): Promise<Decision> {
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
        refuse(req, res, decision.refusal)
      },
      (error: unknown) => {
        if (res.headersSent) {
          // The status line is out; only closing the connection can signal the failure.
          res.destroy()
          return
        }
        if (next !== undefined) return callNext(res, next, error)
        refuse(req, res, { status: 500 })
      },
    )
  }
}

/** Calls the next middleware; if it throws, answers 500 rather than leave a rejected promise. */
function callNext(res: http.ServerResponse, next: (err?: unknown) => void, error?: unknown): void {
  try {
    if (error === undefined) next()
    else next(error)
  } catch {
    if (res.headersSent) res.destroy()
    else res.writeHead(500, { 'Content-Type': PLAIN }).end('500 Internal Server Error\n')
  }
}

function refused(req: http.IncomingMessage, res: http.ServerResponse, status: number): Decision {
  refuse(req, res, { status })
  return { kind: 'done' }
}

/** `/dir` → `/dir/` (with the query), so relative links in its index resolve inside it. */
function redirectToDirectory(req: http.IncomingMessage, res: http.ServerResponse): Decision {
  // Express rewrites req.url under a mount point; the browser needs the URL it asked for.
  const url = (req as http.IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url ?? '/'
  const end = url.search(/[?#]/)
  const pathname = targetPath(url) ?? '/'
  const query = end === -1 ? '' : url.slice(end).split('#')[0]
  // Leading slashes collapsed: '//evil.example/' would be a protocol-relative redirect.
  const location = `${pathname.replace(/^[\\/]+/, '/')}/${query}`
  refuse(req, res, { status: 301, headers: { Location: location } })
  return { kind: 'done' }
}
