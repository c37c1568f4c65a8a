/**
 * One benchmark server, in its own process so it never shares an event loop with the load
 * generator or another server: `node --import tsx bench/http-server.ts <kind> <root>`.
 * Prints `listening <port>` when ready; exits on SIGTERM.
 *
 * - `static`: createStaticHandler(root), the zero-copy path.
 * - `serve-file`: serveFile for the URL's file name, without the static handler's realpath checks.
 * - `stream`: the usual node:http way, fs.createReadStream piped into the response, with Content-Length.
 */
import * as fs from 'node:fs'
import * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'
import { pipeline } from 'node:stream'

import { createStaticHandler, serveFile } from '..'

const [kind, root] = process.argv.slice(2)
if (!kind || !root) throw new Error('usage: http-server.ts <static|serve-file|stream> <root>')

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

const handlers: Record<string, http.RequestListener> = {
  static: createStaticHandler(root),
  'serve-file': serveFileHandler,
  stream: streamHandler,
}
const handler = handlers[kind]
if (!handler) throw new Error(`unknown server kind ${kind}`)

const server = http.createServer({ keepAliveTimeout: 30_000 }, handler)
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`)
})
process.on('SIGTERM', () => {
  server.closeAllConnections()
  server.close(() => process.exit(0))
})
