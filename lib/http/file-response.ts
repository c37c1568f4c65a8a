/**
 * Answering a request with an open regular file: the preconditions and the range decide the
 * status, the headers describe the fstat'ed file, then the body goes by the way the response
 * allows (sendfile, `res.write`, or the HTTP/2 stream's own file response).
 */
import type * as http from 'node:http'
import * as http2 from 'node:http2'
import * as path from 'node:path'
import * as mime from 'mime-types'

import { abortError } from '../errors.js'
import type { OpenedPath } from '../source.js'
import { type Announced, bodyGoesRaw, responseSocket, sendToSocket, writeThroughResponse } from './body.js'
import { ifRangeHolds, preconditions, validatorsOf } from './conditionals.js'
import { sendOverHttp2 } from './http2.js'
import type { FileSettings } from './options.js'
import { bodyOf, contentRange, requestedRange, unsatisfiedRange } from './ranges.js'
import { type AnyRequest, type AnyResponse, type Headers, headerIn, refuse, withExtra, writeHead } from './response.js'

/** Answers `req` with `file`, an open regular file: preconditions, range, headers, then the body. */
export async function respondWithFile(req: AnyRequest, res: AnyResponse, file: OpenedPath, settings: FileSettings): Promise<void> {
  const { stats } = file
  const size = stats.size
  const validators = validatorsOf(stats, settings)
  const cacheHeaders: Record<string, string> = {}
  if (validators.etag !== undefined) cacheHeaders.ETag = validators.etag
  if (settings.lastModified) cacheHeaders['Last-Modified'] = stats.mtime.toUTCString()
  if (settings.cacheControl !== undefined) cacheHeaders['Cache-Control'] = settings.cacheControl

  const condition = preconditions(req.method, req.headers, validators)
  if (condition === 412) return refuse(req, res, { status: 412 })
  if (condition === 304) {
    // No body and no Content-*: the client's cached copy stands; the validators refresh it.
    writeHead(res, 304, withExtra(cacheHeaders, settings.headers))
    res.end()
    return
  }

  const headers: Headers = { 'Accept-Ranges': settings.acceptRanges ? 'bytes' : 'none', ...cacheHeaders }
  const range = settings.acceptRanges && ifRangeHolds(req.headers['if-range'], validators) ? requestedRange(req.method, req.headers.range, size) : 'whole'
  if (range === 'unsatisfiable') return refuse(req, res, { status: 416, headers: { 'Accept-Ranges': 'bytes', 'Content-Range': unsatisfiedRange(size) } })
  const status = range === 'whole' ? 200 : 206
  if (range !== 'whole') headers['Content-Range'] = contentRange(range, size)
  const body = bodyOf(range, size)
  const contentType =
    settings.contentType ?? (res.hasHeader('Content-Type') ? undefined : mime.contentType(path.extname(file.path)) || 'application/octet-stream')
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
