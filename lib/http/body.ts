/**
 * The body of an HTTP/1 file response: zero-copy with sendFile, queued on the socket behind the
 * headers, when the bytes on the wire are exactly the file's (the part headers of a multipart
 * body are plain writes in the same queue, between the ranges); otherwise through `res.write`
 * (also HTTP/2's way when something wrapped the response, or for a multipart body), with
 * backpressure.
 */
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as net from 'node:net'

import { takeHeldHeader } from '../node-internals.js'
import { sendOpenedFile } from '../send-file.js'
import type { OpenedPath } from '../source.js'
import { streamRange } from '../stream-fallback.js'
import type { FileBody } from './multipart.js'
import type { BodyRange } from './ranges.js'
import { type HeaderValue, type OutgoingResponse, isClientGone, responseClosed, shrankError } from './response.js'

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
export function responseSocket(req: http.IncomingMessage, res: http.ServerResponse): Promise<net.Socket | null> {
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

/** What serveFile's headers say of the body, as set, before any `writeHead` hook ran. */
export interface Announced {
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
export function bodyGoesRaw(res: http.ServerResponse, socket: net.Socket, announced: Announced): boolean {
  return (
    socket instanceof net.Socket &&
    res.write === http.ServerResponse.prototype.write &&
    res.end === http.ServerResponse.prototype.end &&
    String(res.getHeader('Content-Length')) === announced.length &&
    !res.hasHeader('Transfer-Encoding') &&
    res.getHeader('Content-Encoding') === announced.encoding
  )
}

/**
 * The body with sendfile, queued on the socket behind the headers: each part's head is a plain
 * write and its range a sendFile, which the socket's write gate keeps in the order they are
 * made; one part at a time, so a shrunk file stops the body at the first short range.
 */
export async function sendToSocket(
  res: http.ServerResponse,
  socket: net.Socket,
  file: OpenedPath,
  body: FileBody,
  signal: AbortSignal | undefined,
): Promise<void> {
  // The response's head goes out with the first bytes of the file: one segment when the body is
  // small and cached (sent inline), else just ahead of it in the socket's queue.
  let responseHead = takeHeldHeader(res)
  for (const { head, range } of body.parts) {
    let sent: number
    try {
      const before = responseHead === undefined ? head : head.length === 0 ? responseHead : Buffer.concat([responseHead, head])
      responseHead = undefined
      sent = await sendOpenedFile(socket, file, { offset: range.start, length: range.length }, signal, before)
    } catch (error) {
      // Part of the body may be out: only closing the connection tells the client it is short.
      socket.destroy()
      if (isClientGone(error)) return
      throw error
    }
    if (sent !== range.length) {
      // The file shrank after fstat: Content-Length promised more, and keep-alive would misframe.
      socket.destroy()
      throw shrankError(file.path, sent, range.length)
    }
  }
  if (body.tail.length > 0) socket.write(body.tail)
  res.end()
}

/**
 * The body through `res.write`, for a response that frames or transforms it itself (a
 * compression middleware, a wrapped `write`): the package's one read/write loop, waiting for
 * 'drain' whenever `write` asks to, so a slow client holds at most a chunk or two in memory.
 */
export async function writeThroughResponse(res: OutgoingResponse, file: OpenedPath, body: FileBody, signal: AbortSignal | undefined): Promise<void> {
  const flow = watchFlow(res)
  try {
    for (const { head, range } of body.parts) {
      if (head.length > 0) await flow.write(head)
      const written = await writeRange(flow, file, range, signal)
      if (written !== range.length) {
        res.destroy()
        throw shrankError(file.path, written, range.length)
      }
    }
    if (body.tail.length > 0) await flow.write(body.tail)
  } catch (error) {
    res.destroy()
    if (isClientGone(error)) return
    throw error
  } finally {
    flow.stop()
  }
  res.end()
}

/** Writes `range` of `file` through `flow`; resolves with the bytes written (fewer if the file shrank). */
function writeRange(flow: Flow, file: OpenedPath, { start, length }: BodyRange, signal: AbortSignal | undefined): Promise<number> {
  // streamRange hands over each chunk as a buffer of its own: the response (or a gzip stream) may hold on to it.
  return streamRange(file, { offset: start, length }, { signal }, (chunk) => flow.write(chunk))
}

interface Flow {
  write(chunk: Buffer): Promise<void>
  stop(): void
}

/**
 * Writes to the response, resolving when the chunk is accepted: at once, or at its 'drain'
 * when `write` asked to wait; rejecting once the response has closed. One listener each for
 * 'drain' and 'close' for the whole body however many chunks wait. (compression() sends
 * `on('drain')` to its gzip stream but not `off`: the one listener stays on that stream, which
 * ends with the response.)
 */
function watchFlow(res: OutgoingResponse): Flow {
  let closed = res instanceof http2.Http2ServerResponse ? res.stream.destroyed : (res as http.ServerResponse).destroyed
  let wake: (() => void) | undefined
  const onDrain = () => wake?.()
  const onClose = () => {
    closed = true
    wake?.()
  }
  res.on('drain', onDrain)
  res.on('close', onClose)
  const drained = () =>
    new Promise<void>((resolve, reject) => {
      if (closed) return reject(responseClosed())
      wake = () => {
        wake = undefined
        if (closed) reject(responseClosed())
        else resolve()
      }
    })
  return {
    async write(chunk: Buffer): Promise<void> {
      if (closed) throw responseClosed()
      if (!res.write(chunk)) await drained()
    },
    stop(): void {
      res.off('drain', onDrain)
      res.off('close', onClose)
    },
  }
}
