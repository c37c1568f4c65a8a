/**
 * `serve`'s access log: one line per response, saying whether its body went zero-copy. The
 * static handler does not say; transferChannel does, with a report per sendFile whose `target`
 * is the response's socket.
 */
import type * as http from 'node:http'
import * as net from 'node:net'

import { transferChannel, type TransferReport } from '../../index.js'

/**
 * The last sendFile report per socket, until a response takes it. Responses on one connection
 * write their bodies one after another (pipelined ones wait their turn), and a body's report is
 * published before its response ends, so at a response's 'finish' the socket's report is its own.
 */
export class BodyReports {
  private readonly bySocket = new WeakMap<net.Socket, TransferReport>()
  private readonly listener = (report: TransferReport) => {
    if (report.operation === 'sendFile' && report.target instanceof net.Socket) this.bySocket.set(report.target, report)
  }

  constructor() {
    transferChannel.subscribe(this.listener)
  }

  take(socket: net.Socket): TransferReport | undefined {
    const report = this.bySocket.get(socket)
    this.bySocket.delete(socket)
    return report
  }

  dispose(): void {
    transferChannel.unsubscribe(this.listener)
  }
}

export interface AccessEntry {
  time: Date
  method: string
  url: string
  status: number
  bodyBytes: number
  milliseconds: number
  /** `zero-copy`, `stream` (res.write or the stream fallback), or `-` without a body. */
  body: 'zero-copy' | 'stream' | '-'
  /** False when the connection closed before the response was complete. */
  complete: boolean
}

/** `2025-11-28T09:16:02Z GET /song.mp3 200 4404019 B 3.1 ms zero-copy` (and ` aborted` for a cut-off response). */
export function accessLine(entry: AccessEntry): string {
  const time = `${entry.time.toISOString().slice(0, 19)}Z`
  const line = `${time} ${entry.method} ${entry.url} ${entry.status} ${entry.bodyBytes} B ${entry.milliseconds.toFixed(1)} ms ${entry.body}`
  return entry.complete ? line : `${line} aborted`
}

/** Statuses whose responses never carry a body. */
const BODILESS = new Set([204, 304])

/** Calls `write` with the access line of `res` once it is done (complete or cut off). */
export function logResponse(req: http.IncomingMessage, res: http.ServerResponse, reports: BodyReports, write: (line: string) => void): void {
  const started = performance.now()
  const time = new Date()
  const socket = req.socket
  let report: TransferReport | undefined
  // At 'finish' the next pipelined response may already own the socket, but its body has not started.
  res.once('finish', () => (report = reports.take(socket)))
  res.once('close', () => {
    const complete = res.writableFinished
    // Cut off mid-body: the failed transfer's report says how far it got.
    if (!complete) report = reports.take(socket)
    const announced = req.method === 'HEAD' || BODILESS.has(res.statusCode) ? 0 : Number(res.getHeader('Content-Length')) || 0
    // The res.write path publishes no report: a complete response sent what its Content-Length said.
    const bodyBytes = report?.bytes ?? (complete ? announced : 0)
    const body = report?.zeroCopy ? 'zero-copy' : bodyBytes > 0 ? 'stream' : '-'
    write(
      accessLine({
        time,
        method: req.method ?? '-',
        url: req.url ?? '-',
        status: res.statusCode,
        bodyBytes,
        milliseconds: performance.now() - started,
        body,
        complete,
      }),
    )
  })
}
