/** The HTTP tests' shared fixtures: a server for the test's lifetime, and one request read whole. */
import type { ExecutionContext } from 'ava'
import * as http from 'node:http'
import type * as http2 from 'node:http2'
import type * as https from 'node:https'
import type * as net from 'node:net'

import { within } from './socket-fixtures'

/**
 * Listens on 127.0.0.1 (a free port) until the test ends, then closes the server and every
 * connection it still has; resolves with the port.
 */
export async function listen(t: ExecutionContext, server: http.Server | https.Server | http2.Http2Server): Promise<number> {
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        if (server instanceof http.Server) server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()))
  return (server.address() as net.AddressInfo).port
}

export interface Reply {
  status: number
  headers: http.IncomingHttpHeaders
  body: Buffer
}

/** One request with node:http on its own connection: the body exactly as it came over the wire (never decompressed). */
export function request(port: number, target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const done = new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method, headers, agent: false }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      res.once('error', reject)
    })
    req.once('error', reject)
    req.end()
  })
  return within(done, 10_000, `${method} ${target}`)
}
