/** serveFile: one request answered with one file. */
import type * as http from 'node:http'
import type * as http2 from 'node:http2'
import * as nodePath from 'node:path'

import { abortError } from '../errors.js'
import type { OpenedPath } from '../source.js'
import { validateString } from '../validate.js'
import { attachment } from './disposition.js'
import { type VariantSuffix, respondWithFile } from './file-response.js'
import { closeQuietly, openForResponse } from './files.js'
import { type ServeFileOptions, fileSettings } from './options.js'
import { headersSentError, isRefusal, refuse } from './response.js'

/**
 * Answers an HTTP request with a file, its body sent zero-copy with `sendfile(2)`:
 *
 * - 200 with `Content-Type` (from the extension; `charset=utf-8` for text), `Content-Length`,
 *   `Accept-Ranges: bytes`, `Last-Modified`, a strong `ETag` from inode, size and mtime and
 *   `Cache-Control: public, max-age=<maxAge>[, immutable]`. HEAD: the same headers, no body.
 * - `Range` on GET (and HEAD, without the body): one range → 206 with `Content-Range`
 *   (`bytes=0-99`, `bytes=100-`, `bytes=-100`); several → 206 `multipart/byteranges`, each
 *   range sent zero-copy after its part headers (overlapping and adjacent ranges coalesced;
 *   more than `maxRanges`, or ranges overlapping more than once → 200); no satisfiable range →
 *   416 with `Content-Range: bytes *\/<size>`. A malformed `Range` is ignored (200). `If-Range`
 *   (the ETag, strongly compared, or the Last-Modified date) that no longer matches → 200 with
 *   the whole file.
 * - Preconditions in RFC 9110 order: `If-Match` / `If-Unmodified-Since` failing → 412;
 *   `If-None-Match` (weak comparison, `*`, lists), else `If-Modified-Since` → 304 with the
 *   validators and `Cache-Control`, no body. `If-Match` and `If-Range` compare strongly.
 * - `precompressed`: `path.br` / `path.zst` / `path.gz` when the client accepts it (see the
 *   option); `download`: `Content-Disposition: attachment`; `setHeaders`: the caller's headers.
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
export async function serveFile(
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
  path: string,
  options?: ServeFileOptions,
): Promise<void> {
  const settings = fileSettings(options)
  validateString(path, 'path')
  if (res.headersSent) throw headersSentError()
  if (settings.signal?.aborted) throw abortError(settings.signal)
  if (path.includes('\0')) return refuse(req, res, { status: 404 })
  const opened = await openForResponse(path, { noFollow: false })
  if (isRefusal(opened)) return refuse(req, res, opened)
  try {
    if (!opened.stats.isFile()) return refuse(req, res, { status: 404 })
    const disposition = settings.download === false ? undefined : attachment(settings.download === true ? nodePath.basename(path) : settings.download)
    await respondWithFile(req, res, opened, settings, { path, disposition, openVariant: (suffix) => openVariant(path, suffix) })
  } finally {
    closeQuietly(opened)
  }
}

/** `path` + `suffix` (`app.js.br`) when it is a regular file, opened as `path` was; else undefined. */
async function openVariant(path: string, suffix: VariantSuffix): Promise<OpenedPath | undefined> {
  const opened = await openForResponse(path + suffix, { noFollow: false })
  if (isRefusal(opened)) return undefined
  if (opened.stats.isFile()) return opened
  closeQuietly(opened)
  return undefined
}
