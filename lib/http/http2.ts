/**
 * The body of a file response over the `node:http2` compatibility API: the stream sends the
 * file itself with `respondWithFD`, Node's own file response.
 */
import * as http2 from 'node:http2'

import { abortError } from '../errors.js'
import type { OpenedPath } from '../source.js'
import { writeThroughResponse } from './body.js'
import { type FileBody, plainRange } from './multipart.js'
import { type Headers, isClientGone, writeHead } from './response.js'

/**
 * Answers with `status`, `headers` and `body` of `file`: through `respondWithFD`, reading the
 * fd as the flow-control window opens; through `res.write` when something wrapped the
 * response's `writeHead`, `write` or `end`, or for a multipart body (`respondWithFD` sends one
 * range of one fd). Resolves once the stream has closed: until then the fd is still being read
 * and must stay open.
 */
export async function sendOverHttp2(
  res: http2.Http2ServerResponse,
  file: OpenedPath,
  status: number,
  headers: Headers,
  body: FileBody,
  signal: AbortSignal | undefined,
): Promise<void> {
  const stream = res.stream
  // The client reset the stream before its answer: nothing left to answer.
  if (stream.destroyed || stream.closed) return
  if (signal?.aborted) throw abortError(signal)
  const prototype = http2.Http2ServerResponse.prototype
  const range = plainRange(body)
  if (range === undefined || res.writeHead !== prototype.writeHead || res.write !== prototype.write || res.end !== prototype.end) {
    writeHead(res, status, headers)
    return writeThroughResponse(res, file, body, signal)
  }
  // Headers set on the response earlier (a Content-Type, a middleware's) go out too, as with writeHead.
  const streamHeaders: http2.OutgoingHttpHeaders = { ...res.getHeaders() }
  for (const [name, value] of Object.entries(headers)) streamHeaders[name.toLowerCase()] = value
  streamHeaders[':status'] = status
  // For whoever logs the response afterwards: it went out past the compatibility layer.
  res.statusCode = status
  await untilStreamClosed(stream, signal, () => stream.respondWithFD(file.fd, streamHeaders, { offset: range.start, length: range.length }))
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
