/**
 * One Node benchmark server, in its own process so it never shares an event loop with the load
 * generator or another server: `node --import tsx bench/http-server.ts <kind> <root> <deadline-seconds>`.
 *
 * - `static`: createStaticHandler(root), the zero-copy path.
 * - `serve-file`: serveFile for the URL's file name, without the static handler's realpath checks.
 * - `buffer`: `res.end(buffer)` of the file read into memory at startup, with Content-Length: no
 *   file I/O per request, so what node:http itself costs; the ceiling for any Node file server.
 * - `stream`: the usual node:http way, fs.createReadStream piped into the response, with Content-Length.
 * - `send`: the `send` package (what express.static uses), `send(req, pathname, { root }).pipe(res)`.
 *
 * stdout, one JSON object per line: `{"port","pid"}` once listening. SIGUSR2 toggles a window
 * (Node keeps SIGUSR1 for its inspector): the first starts it and prints `{"window":"started"}`,
 * the next ends it and prints `{"loopP99Ms","loopMaxMs","loopMeanMs","loopSamples",
 * "eventLoopUtilization","cpuUserUs","cpuSysUs"}` for the window. The event-loop delay is
 * perf_hooks.monitorEventLoopDelay at 1 ms resolution (the default 10 ms would round every delay
 * up to its own tick), enabled only inside a window so its timer costs the throughput runs nothing.
 * Exits on SIGTERM, and by itself once the deadline passes.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream'
import send from 'send'

import { createStaticHandler, serveFile } from '..'

const [kind, root, deadlineText] = process.argv.slice(2)
if (!kind || !root) throw new Error('usage: http-server.ts <static|serve-file|buffer|stream|send> <root> [deadline-seconds]')

setTimeout(
  () => {
    process.stderr.write(`http-server ${kind}: deadline passed\n`)
    process.exit(3)
  },
  Number(deadlineText ?? 600) * 1000,
).unref()

/** The file a bench URL names: its last path segment, inside root (the bench asks for fixed names). */
function fileOf(req: http.IncomingMessage): string {
  return path.join(root, path.basename((req.url ?? '/').split('?')[0]))
}

function streamHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const file = fileOf(req)
  fs.stat(file, (error, stats) => {
    if (error || !stats.isFile()) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': stats.size })
    if (req.method === 'HEAD') {
      res.end()
      return
    }
    pipeline(fs.createReadStream(file), res, () => {})
  })
}

function serveFileHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  serveFile(req, res, fileOf(req)).catch(() => {
    if (!res.headersSent) res.writeHead(500).end()
  })
}

/** Every file of root, read once at startup: the bench's root holds only its few fixtures. */
function bufferHandler(): http.RequestListener {
  const contents = new Map(fs.readdirSync(root).map((name) => [`/${name}`, fs.readFileSync(path.join(root, name))]))
  return (req, res) => {
    const content = contents.get((req.url ?? '/').split('?')[0])
    if (!content) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': content.length })
    res.end(req.method === 'HEAD' ? undefined : content)
  }
}

function sendHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  send(req, (req.url ?? '/').split('?')[0], { root }).pipe(res)
}

const handlers: Record<string, () => http.RequestListener> = {
  static: () => createStaticHandler(root),
  'serve-file': () => serveFileHandler,
  buffer: bufferHandler,
  stream: () => streamHandler,
  send: () => sendHandler,
}
const makeHandler = handlers[kind]
if (!makeHandler) throw new Error(`unknown server kind ${kind}`)

const LOOP_RESOLUTION_MS = 1
let window: { delay: ReturnType<typeof monitorEventLoopDelay>; cpu: NodeJS.CpuUsage; elu: ReturnType<typeof performance.eventLoopUtilization> } | undefined

function toggleWindow(): void {
  if (!window) {
    const delay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
    delay.enable()
    window = { delay, cpu: process.cpuUsage(), elu: performance.eventLoopUtilization() }
    process.stdout.write(`${JSON.stringify({ window: 'started' })}\n`)
    return
  }
  const { delay, cpu, elu } = window
  window = undefined
  delay.disable()
  const used = process.cpuUsage(cpu)
  process.stdout.write(
    `${JSON.stringify({
      // No sample at all (a window shorter than one tick): unknown, not 0.
      loopP99Ms: delay.count > 0 ? delay.percentile(99) / 1e6 : null,
      loopMaxMs: delay.count > 0 ? delay.max / 1e6 : null,
      loopMeanMs: delay.count > 0 ? delay.mean / 1e6 : null,
      loopSamples: delay.count,
      eventLoopUtilization: performance.eventLoopUtilization(elu).utilization,
      cpuUserUs: used.user,
      cpuSysUs: used.system,
    })}\n`,
  )
}

const server = http.createServer({ keepAliveTimeout: 30_000 }, makeHandler())
// 1000 clients connecting at once: Node's default backlog (511) would drop SYNs into 1 s retries.
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as net.AddressInfo).port, pid: process.pid })}\n`)
})
process.on('SIGUSR2', toggleWindow)
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
