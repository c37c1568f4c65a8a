/**
 * Answering a request with an open regular file: the representation (the file or a
 * precompressed variant), the preconditions and the ranges decide the status, the headers
 * describe the fstat'ed file, then the body goes by the way the response allows (sendfile,
 * `res.write`, or the HTTP/2 stream's own file response).
 */
import { randomBytes } from 'node:crypto'
import type * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import * as mime from 'mime-types'

import { abortError } from '../errors.js'
import type { OpenedPath } from '../source.js'
import { type Announced, bodyGoesRaw, responseSocket, sendToSocket, writeThroughResponse } from './body.js'
import { type Validators, ifRangeHolds, preconditions, validatorsOf } from './conditionals.js'
import { type Encoding, VARIANT_SUFFIX, acceptableEncodings } from './encoding.js'
import { closeQuietly } from './files.js'
import { sendOverHttp2 } from './http2.js'
import { type FileBody, multipartBody, multipartType, plainBody } from './multipart.js'
import type { FileSettings } from './options.js'
import { bodyOf, contentRange, requestedRanges, unsatisfiedRange } from './ranges.js'
import { type AnyRequest, type AnyResponse, type HeaderValue, type Headers, headerIn, refuse, withExtra, writeHead } from './response.js'

/** The file name suffix of a precompressed variant. */
export type VariantSuffix = (typeof VARIANT_SUFFIX)[Encoding]

/** What a caller of {@link respondWithFile} knows of the file beyond the open fd. */
export interface FileContext {
  /** The file's path, for its type (its extension) and for `setHeaders`. Default: the opened path. */
  path?: string
  /**
   * Opens the file's variant with this suffix (`app.js` + `.br`) when it exists as a regular
   * file, else resolves undefined; what it returns is closed (`closeSync`) here when the response
   * is done. Without it, `precompressed` has nothing to look at.
   */
  openVariant?: (suffix: VariantSuffix) => Promise<OpenedPath | undefined>
  /** A `Content-Disposition` for the 200, 206 and HEAD responses (serveFile's `download`). */
  disposition?: string
}

/** The representation chosen: the file itself or one of its variants. */
interface Representation {
  file: OpenedPath
  encoding: Encoding | undefined
  /** The file has a variant, whichever is sent: caches must key on Accept-Encoding. */
  hasVariants: boolean
}

/**
 * Answers `req` with `file`, an open regular file (or its precompressed variant): preconditions,
 * ranges, headers, then the body.
 */
export async function respondWithFile(req: AnyRequest, res: AnyResponse, file: OpenedPath, settings: FileSettings, context: FileContext = {}): Promise<void> {
  // No variants to look for (the usual case): no await, so no extra turn of the microtask queue.
  const chosen = settings.precompressed.length === 0 ? { file, encoding: undefined, hasVariants: false } : await representation(req, file, settings, context)
  try {
    await respondWith(req, res, file, chosen, settings, context)
  } finally {
    if (chosen.file !== file) closeQuietly(chosen.file)
  }
}

/**
 * The variant the request takes, else the file. A variant's absence is only known by trying to
 * open it, so for a request that takes none (or whose variants are missing) the other variants
 * are looked for too: `Vary` must be on every response for a file that has one.
 */
async function representation(req: AnyRequest, file: OpenedPath, settings: FileSettings, { openVariant }: FileContext): Promise<Representation> {
  if (settings.precompressed.length === 0 || openVariant === undefined) return { file, encoding: undefined, hasVariants: false }
  const wanted = acceptableEncodings(req.headers['accept-encoding'], settings.precompressed)
  for (const encoding of wanted) {
    const variant = await openVariant(VARIANT_SUFFIX[encoding])
    if (variant !== undefined) return { file: variant, encoding, hasVariants: true }
  }
  for (const encoding of settings.precompressed) {
    if (wanted.includes(encoding)) continue
    const variant = await openVariant(VARIANT_SUFFIX[encoding])
    if (variant === undefined) continue
    closeQuietly(variant)
    return { file, encoding: undefined, hasVariants: true }
  }
  return { file, encoding: undefined, hasVariants: false }
}

async function respondWith(
  req: AnyRequest,
  res: AnyResponse,
  original: OpenedPath,
  { file, encoding, hasVariants }: Representation,
  settings: FileSettings,
  context: FileContext,
): Promise<void> {
  const { stats } = file
  const size = stats.size
  const filePath = context.path ?? original.path
  const described = describe(stats, settings)
  const { validators } = described
  const cacheHeaders: Record<string, string> = {}
  if (hasVariants) cacheHeaders.Vary = varyOn(res.getHeader('Vary'), 'Accept-Encoding')
  if (validators.etag !== undefined) cacheHeaders.ETag = validators.etag
  if (described.lastModified !== undefined) cacheHeaders['Last-Modified'] = described.lastModified
  if (settings.cacheControl !== undefined) cacheHeaders['Cache-Control'] = settings.cacheControl

  const condition = preconditions(req.method, req.headers, validators)
  if (condition === 412) return refuse(req, res, { status: 412, headers: hasVariants ? { Vary: cacheHeaders.Vary } : {} })
  if (condition === 304) {
    // No body and no Content-*: the client's cached copy stands; the validators refresh it.
    writeHead(res, 304, withExtra(cacheHeaders, settings.headers))
    res.end()
    return
  }

  const asked =
    settings.acceptRanges && ifRangeHolds(req.headers['if-range'], validators)
      ? requestedRanges(req.method, req.headers.range, size, settings.maxRanges)
      : 'whole'
  if (asked === 'unsatisfiable') {
    const headers: Record<string, string> = { 'Accept-Ranges': 'bytes', 'Content-Range': unsatisfiedRange(size) }
    if (hasVariants) headers.Vary = cacheHeaders.Vary
    return refuse(req, res, { status: 416, headers })
  }
  // Several ranges of a variant: a multipart body under Content-Encoding would read as compressed
  // as a whole, so the whole variant answers (a server may always ignore Range).
  const ranges = asked !== 'whole' && asked.length > 1 && encoding !== undefined ? 'whole' : asked

  // The caller's hook first: what it sets wins over what is computed below.
  const touched = callSetHeaders(res, settings, filePath, original)
  const headers: Headers = { 'Accept-Ranges': settings.acceptRanges ? 'bytes' : 'none', ...cacheHeaders }
  if (encoding !== undefined) headers['Content-Encoding'] = encoding
  if (context.disposition !== undefined) headers['Content-Disposition'] = context.disposition
  const contentType = settings.contentType ?? (res.hasHeader('Content-Type') ? undefined : typeOf(described, filePath))
  if (contentType !== undefined) headers['Content-Type'] = contentType
  let extra = settings.headers
  let body: FileBody
  let status = 200
  if (ranges === 'whole') body = plainBody(bodyOf('whole', size))
  else if (ranges.length === 1) {
    status = 206
    headers['Content-Range'] = contentRange(ranges[0], size)
    body = plainBody(bodyOf(ranges[0], size))
  } else {
    status = 206
    // The file's type goes in each part; the response's is multipart whatever set one.
    const partType = headerIn(extra, 'Content-Type') ?? contentType ?? res.getHeader('Content-Type') ?? 'application/octet-stream'
    const boundary = randomBytes(12).toString('hex')
    body = multipartBody(ranges, size, String(partType), boundary)
    extra = withoutHeader(extra, 'Content-Type')
    touched.delete('content-type')
    headers['Content-Type'] = multipartType(boundary)
  }
  headers['Content-Length'] = body.length

  const allHeaders = withoutHeaders(withExtra(headers, extra), touched)

  if (req.method === 'HEAD' || body.length === 0) {
    writeHead(res, status, allHeaders)
    res.end()
    return
  }
  if (res instanceof http2.Http2ServerResponse) return sendOverHttp2(res, file, status, allHeaders, body, settings.signal)
  const socket = res.socket ?? (await responseSocket(req as http.IncomingMessage, res))
  if (socket === null) return
  if (settings.signal?.aborted) throw abortError(settings.signal)
  if (isPristine(res, socket)) {
    // Nothing else has touched this response: the headers go to Node in one array, the fastest
    // way it builds a head, and the bytes on the wire are exactly these.
    const pairs: http.OutgoingHttpHeader[] = []
    for (const name in allHeaders) pairs.push(name, allHeaders[name])
    res.writeHead(status, pairs)
    return sendToSocket(res, socket, file, body, settings.signal)
  }
  // The Content-Encoding as set: from serveFile's headers, else one the caller set earlier.
  const announced: Announced = { length: String(body.length), encoding: headerIn(allHeaders, 'Content-Encoding') ?? res.getHeader('Content-Encoding') }
  writeHead(res, status, allHeaders)
  if (bodyGoesRaw(res, socket, announced)) return sendToSocket(res, socket, file, body, settings.signal)
  return writeThroughResponse(res, file, body, settings.signal)
}

/**
 * A response no middleware has touched: Node's own `writeHead`, `write` and `end`, no header set
 * yet (an Express app's `X-Powered-By` counts), a plain TCP or Unix socket. Its head is exactly
 * what is passed to `writeHead`, and its body what goes on the socket.
 */
function isPristine(res: http.ServerResponse, socket: net.Socket): boolean {
  const own = http.ServerResponse.prototype
  return (
    res.writeHead === own.writeHead &&
    res.write === own.write &&
    res.end === own.end &&
    res.getHeaderNames().length === 0 &&
    socket instanceof net.Socket &&
    !(socket instanceof tls.TLSSocket)
  )
}

/** What a file's stats give its headers, worked out once per stats object. */
interface Described {
  validators: Validators
  lastModified: string | undefined
  /** The last path asked for and its type: a cached file is always asked for by the same path. */
  typed?: { path: string; type: string }
}

/** Per fs.Stats, per option set: an open-file cache hands the same stats to every request. */
const descriptions = new WeakMap<object, WeakMap<FileSettings, Described>>()

function describe(stats: fs.Stats, settings: FileSettings): Described {
  let bySettings = descriptions.get(stats)
  if (bySettings === undefined) {
    bySettings = new WeakMap()
    descriptions.set(stats, bySettings)
  }
  let described = bySettings.get(settings)
  if (described === undefined) {
    described = { validators: validatorsOf(stats, settings), lastModified: settings.lastModified ? stats.mtime.toUTCString() : undefined }
    bySettings.set(settings, described)
  }
  return described
}

function typeOf(described: Described, filePath: string): string {
  if (described.typed?.path !== filePath) described.typed = { path: filePath, type: mime.contentType(path.extname(filePath)) || 'application/octet-stream' }
  return described.typed.type
}

/**
 * Runs `setHeaders` and returns the lower-case names of the headers it set, changed or removed,
 * which the computed headers then leave alone.
 */
function callSetHeaders(res: AnyResponse, settings: FileSettings, filePath: string, file: OpenedPath): Set<string> {
  const touched = new Set<string>()
  if (settings.setHeaders === undefined) return touched
  const before = res.getHeaders()
  settings.setHeaders(res, filePath, file.stats)
  const after = res.getHeaders()
  for (const name of new Set([...Object.keys(before), ...Object.keys(after)])) if (before[name] !== after[name]) touched.add(name)
  return touched
}

/** `headers` without those named in `names` (lower case). */
function withoutHeaders(headers: Headers, names: Set<string>): Headers {
  if (names.size === 0) return headers
  return Object.fromEntries(Object.entries(headers).filter(([name]) => !names.has(name.toLowerCase())))
}

function withoutHeader(headers: Headers, name: string): Headers {
  return withoutHeaders(headers, new Set([name.toLowerCase()]))
}

/** A `Vary` value that includes `field`, keeping what the response already varies on. */
function varyOn(existing: HeaderValue | undefined, field: string): string {
  if (existing === undefined) return field
  const fields = (Array.isArray(existing) ? existing.join(', ') : String(existing)).trim()
  if (fields === '') return field
  if (fields === '*' || fields.split(',').some((name) => name.trim().toLowerCase() === field.toLowerCase())) return fields
  return `${fields}, ${field}`
}
