/**
 * serveFile and createStaticHandler against real servers on 127.0.0.1 (node:http, node:https,
 * node:http2, Express with compression()) and real clients: Node's fetch, http.get and
 * https.get, an http2 session, and a raw socket client for keep-alive, pipelining and request
 * targets that fetch would normalize. Every wait is bounded; nothing depends on timing.
 */
import test, { type ExecutionContext } from 'ava'
import compression from 'compression'
import express from 'express'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import * as https from 'node:https'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as tls from 'node:tls'
import * as zlib from 'node:zlib'

import { createStaticHandler, serveFile, transferChannel, type StaticOptions, type TransferReport } from '..'
import { fdsSettle, openFdCount, pattern, sha256, tempDir, tick } from './helpers'
import { listen } from './http-fixtures'
import { eventually, fdsOpenOn, sparseFile, waitUntilStalled, within } from './socket-fixtures'

const MiB = 1024 * 1024

const unexpected: unknown[] = []
process.on('uncaughtException', (error) => unexpected.push(error))
process.on('unhandledRejection', (error) => unexpected.push(error))

// ---------------------------------------------------------------------------------------------
// Fixtures: one public root and a secret next to it, created once, read-only for every test.

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-http-'))
// Searchable by everyone: the EACCES test runs as nobody.
fs.chmodSync(base, 0o755)
const root = path.join(base, 'public')
const outside = path.join(base, 'outside')
const SECRET = `TOP-SECRET-${process.pid}-${Date.now()}`
const MTIME = new Date('2024-01-02T03:04:05.678Z')
const LAST_MODIFIED = 'Tue, 02 Jan 2024 03:04:05 GMT'

const files: Record<string, Buffer> = {
  'index.html': Buffer.from('<!doctype html><title>root</title>\n'),
  'style.css': Buffer.from('body { color: red }\n'),
  'app.js': Buffer.from('console.log(1)\n'),
  'data.json': Buffer.from('{"a":1}\n'),
  'notes.txt': Buffer.from('plain notes\n'),
  'image.png': pattern(4096, 2),
  'blob.unknownext': pattern(100, 3),
  README: Buffer.from('no extension\n'),
  'mid.bin': pattern(300_001, 4),
  'big.bin': pattern(4 * MiB, 5),
  'empty.txt': Buffer.alloc(0),
  'sub/index.html': Buffer.from('<p>sub index</p>\n'),
  'sub/page.txt': Buffer.from('sub page\n'),
  'sub/.hidden': Buffer.from('hidden\n'),
  'noindex/file.txt': Buffer.from('a file in a directory without index\n'),
  '.env': Buffer.from(`${SECRET} env\n`),
  '.git/config': Buffer.from(`${SECRET} git\n`),
}

test.before(() => {
  for (const [name, data] of Object.entries(files)) {
    const file = path.join(root, name)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.writeFileSync(file, data)
    fs.utimesSync(file, MTIME, MTIME)
  }
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(base, 'secret'), SECRET)
  fs.writeFileSync(path.join(outside, 'secret'), SECRET)
  fs.symlinkSync(path.join(base, 'secret'), path.join(root, 'link-out'))
  fs.symlinkSync(outside, path.join(root, 'dir-out'))
  fs.symlinkSync('notes.txt', path.join(root, 'link-in'))
  execFileSync('mkfifo', [path.join(root, 'fifo')])
  for (const dir of [root, path.join(root, 'sub'), path.join(root, 'noindex')]) fs.chmodSync(dir, 0o755)
})

test.after.always(() => fs.rmSync(base, { recursive: true, force: true }))

// ---------------------------------------------------------------------------------------------
// Servers and clients.

function serve(t: ExecutionContext, handler: http.RequestListener): Promise<number> {
  return listen(t, http.createServer(handler))
}

function serveStatic(t: ExecutionContext, options?: StaticOptions): Promise<number> {
  return serve(t, createStaticHandler(root, options))
}

interface Reply {
  status: number
  headers: Record<string, string | undefined>
  body: Buffer
}

async function get(port: number, target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Reply> {
  const response = await within(fetch(`http://127.0.0.1:${port}${target}`, { method, headers, redirect: 'manual' }), 10_000, `${method} ${target}`)
  const body = Buffer.from(await within(response.arrayBuffer(), 10_000, `body of ${target}`))
  return { status: response.status, headers: Object.fromEntries(response.headers), body }
}

/** Reads HTTP/1.1 responses off one connection, framed by Content-Length (this server never sends chunked bodies). */
class RawConnection {
  readonly socket: net.Socket
  private buffer = Buffer.alloc(0)
  private ended = false
  private wake: (() => void) | undefined
  /** Every byte received, to prove what never arrived. */
  received = Buffer.alloc(0)

  constructor(port: number) {
    this.socket = net.connect(port, '127.0.0.1')
    this.socket.on('error', () => {})
    this.socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk])
      this.received = Buffer.concat([this.received, chunk])
      this.wake?.()
    })
    this.socket.on('close', () => {
      this.ended = true
      this.wake?.()
    })
  }

  send(text: string): void {
    this.socket.write(text)
  }

  /** The next response; `method` says whether it has a body. */
  async next(method = 'GET'): Promise<Reply> {
    return within(this.read(method), 10_000, 'a raw response')
  }

  private async read(method: string): Promise<Reply> {
    for (;;) {
      const reply = this.parse(method)
      if (reply) return reply
      if (this.ended) throw new Error(`connection closed with ${this.buffer.length} bytes of an incomplete response`)
      await new Promise<void>((resolve) => (this.wake = resolve))
      this.wake = undefined
    }
  }

  private parse(method: string): Reply | undefined {
    const headEnd = this.buffer.indexOf('\r\n\r\n')
    if (headEnd === -1) return undefined
    const [statusLine, ...lines] = this.buffer.subarray(0, headEnd).toString('latin1').split('\r\n')
    const status = Number(statusLine.split(' ')[1])
    const headers: Record<string, string> = {}
    for (const line of lines) {
      const colon = line.indexOf(':')
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const hasBody = method !== 'HEAD' && status !== 304 && status !== 204
    const length = hasBody ? Number(headers['content-length'] ?? 0) : 0
    if (this.buffer.length < headEnd + 4 + length) return undefined
    const body = this.buffer.subarray(headEnd + 4, headEnd + 4 + length)
    this.buffer = this.buffer.subarray(headEnd + 4 + length)
    return { status, headers, body }
  }

  /** Bytes received after the last parsed response (none, on a well-framed connection). */
  get leftover(): number {
    return this.buffer.length
  }

  closed(): Promise<void> {
    return within(
      new Promise<void>((resolve) => {
        if (this.ended) return resolve()
        this.socket.once('close', () => resolve())
        this.socket.resume()
      }),
      10_000,
      'the connection closing',
    )
  }
}

function raw(t: ExecutionContext, port: number): RawConnection {
  const connection = new RawConnection(port)
  t.teardown(() => connection.socket.destroy())
  return connection
}

/** One request on its own connection (`Connection: close`), with every byte the server sent back. */
async function rawOnce(t: ExecutionContext, port: number, target: string, method = 'GET'): Promise<Reply & { all: Buffer }> {
  const connection = raw(t, port)
  connection.send(`${method} ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`)
  const reply = await connection.next(method)
  await connection.closed()
  return { ...reply, all: connection.received }
}

function request(target: string, headers: Record<string, string> = {}, method = 'GET'): string {
  return `${method} ${target} HTTP/1.1\r\nHost: localhost\r\n${Object.entries(headers)
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('')}\r\n`
}

/** The strong ETag the package sends: inode, size and mtime in µs, in hex. */
function strongEtagOf(file: string): string {
  const stats = fs.statSync(file)
  return `"${stats.ino.toString(16)}-${stats.size.toString(16)}-${Math.round(stats.mtimeMs * 1000).toString(16)}"`
}

function etagOf(name: string): string {
  return strongEtagOf(path.join(root, name))
}

// ---------------------------------------------------------------------------------------------
// Serial: these count process-wide fds or change the effective uid.

test.serial('500 clients that abort mid-body: the server stays up, answers afterwards, and every fd is released', async (t) => {
  const statics = createStaticHandler(root)
  t.teardown(() => statics.close())
  const port = await serve(t, statics)
  // The handler keeps the root and hot files open (its open-file cache): warmed first, the baseline counts them.
  t.is((await rawOnce(t, port, '/big.bin')).status, 200)
  // Serial tests run alone, so every transfer reported meanwhile is one of these.
  const failedMidBody: string[] = []
  const onReport = (report: unknown) => {
    const { error } = report as TransferReport
    if (error !== undefined) failedMidBody.push((error as NodeJS.ErrnoException).code ?? String(error))
  }
  transferChannel.subscribe(onReport)
  t.teardown(() => transferChannel.unsubscribe(onReport))
  const baseline = openFdCount()
  let aborted = 0
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(
      Array.from(
        { length: 25 },
        () =>
          new Promise<void>((resolve) => {
            const client = net.connect(port, '127.0.0.1')
            client.on('error', () => {})
            client.once('data', () => {
              aborted++
              client.destroy()
            })
            client.once('close', () => resolve())
            client.write(request('/big.bin'))
          }),
      ),
    )
  }
  t.is(aborted, 500, 'every client saw the first bytes before it aborted')
  // 4 MiB is more than a reader that stops at once leaves room for: transfers do fail mid-body.
  t.true(failedMidBody.length > 0, 'some transfers were cut off mid-body')
  t.true(
    failedMidBody.every((code) => ['ECONNRESET', 'EPIPE', 'ERR_STREAM_DESTROYED'].includes(code)),
    failedMidBody.join(),
  )
  t.log(`${failedMidBody.length} of 500 transfers were cut off mid-body`)
  const after = await rawOnce(t, port, '/big.bin')
  t.is(after.status, 200)
  t.is(sha256(after.body), sha256(files['big.bin']))
  t.true((await fdsSettle(baseline)) <= baseline, 'fds back to the baseline')
  statics.close()
  t.true((await fdsSettle(baseline - 2)) <= baseline - 2, 'close() closes the cached file and the root directory')
  t.deepEqual(unexpected, [])
})

test.serial('EACCES: serveFile and the static handler answer 403', async (t) => {
  const locked = path.join(base, 'locked.txt')
  fs.writeFileSync(locked, 'locked')
  fs.chmodSync(locked, 0o600)
  const lockedInRoot = path.join(root, 'sub', 'locked.txt')
  fs.writeFileSync(lockedInRoot, 'locked')
  fs.chmodSync(lockedInRoot, 0o600)
  t.teardown(() => fs.rmSync(lockedInRoot, { force: true }))
  const statics = createStaticHandler(root)
  const port = await serve(t, (req, res) => (req.url === '/serve' ? void serveFile(req, res, locked) : statics(req, res)))
  // Root reads anything: drop the effective uid to nobody for the requests (real uid stays root).
  const seteuid = process.getuid?.() === 0 ? process.seteuid : undefined
  if (seteuid) seteuid(65534)
  else fs.chmodSync(locked, 0)
  try {
    const served = await get(port, '/serve')
    const statically = await get(port, '/sub/locked.txt')
    t.is(served.status, 403)
    t.is(statically.status, 403)
  } finally {
    if (seteuid) seteuid(0)
  }
})

test.serial(
  'unexpected errors (a root the server may not search): next(error) as middleware, 500 as a plain handler, never an unhandled rejection',
  async (t) => {
    const dir = tempDir(t)
    const unsearchable = path.join(dir, 'public')
    fs.mkdirSync(unsearchable)
    fs.writeFileSync(path.join(unsearchable, 'notes.txt'), 'notes\n')
    const plain = await serve(t, createStaticHandler(unsearchable))
    const middleware = await serve(t, chain(createStaticHandler(unsearchable) as Middleware, finalHandler))
    // realpath(root) fails with EACCES: as nobody (the temp dir is root's and 0700), or, not
    // running as root, with the search bit taken from the temp dir.
    const seteuid = process.getuid?.() === 0 ? process.seteuid : undefined
    if (seteuid) seteuid(65534)
    else fs.chmodSync(dir, 0)
    try {
      t.is((await get(plain, '/notes.txt')).status, 500)
      t.is((await get(middleware, '/notes.txt')).body.toString(), 'error from next: EACCES')
    } finally {
      if (seteuid) seteuid(0)
      else fs.chmodSync(dir, 0o700)
    }
    const throwingNext = await serve(t, (req, res) =>
      createStaticHandler(root)(req, res, () => {
        throw new Error('a next that throws')
      }),
    )
    t.is((await get(throwingNext, '/missing.txt')).status, 500)
    t.deepEqual(unexpected, [])
  },
)

// ---------------------------------------------------------------------------------------------
// 200, content types, HEAD.

test('GET: 200 with the exact bytes and the headers a browser and a CDN expect', async (t) => {
  const port = await serveStatic(t)
  const reply = await get(port, '/big.bin')
  t.is(reply.status, 200)
  t.is(sha256(reply.body), sha256(files['big.bin']))
  t.is(reply.headers['content-length'], String(4 * MiB))
  t.is(reply.headers['content-type'], 'application/octet-stream')
  t.is(reply.headers['accept-ranges'], 'bytes')
  t.is(reply.headers['last-modified'], LAST_MODIFIED)
  t.is(reply.headers.etag, etagOf('big.bin'))
  t.regex(reply.headers.etag ?? '', /^"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/)
  t.is(reply.headers['cache-control'], 'public, max-age=0')
  t.is(reply.headers['content-range'], undefined)
})

test('Content-Type from the extension, with charset for text; unknown and no extension are application/octet-stream', async (t) => {
  const port = await serveStatic(t)
  const expected: Record<string, string> = {
    '/index.html': 'text/html; charset=utf-8',
    '/style.css': 'text/css; charset=utf-8',
    '/app.js': 'text/javascript; charset=utf-8',
    '/data.json': 'application/json; charset=utf-8',
    '/notes.txt': 'text/plain; charset=utf-8',
    '/image.png': 'image/png',
    '/blob.unknownext': 'application/octet-stream',
    '/README': 'application/octet-stream',
  }
  for (const [target, type] of Object.entries(expected)) {
    const reply = await get(port, target)
    t.is(reply.status, 200, target)
    t.is(reply.headers['content-type'], type, target)
    t.true(reply.body.equals(files[target.slice(1)]), target)
  }
})

test('HEAD: the same headers as GET and no body, and the connection stays framed for the next request', async (t) => {
  const port = await serveStatic(t)
  const connection = raw(t, port)
  connection.send(request('/mid.bin', {}, 'HEAD'))
  const head = await connection.next('HEAD')
  connection.send(request('/notes.txt'))
  const next = await connection.next()
  t.is(head.status, 200)
  t.is(head.headers['content-length'], String(files['mid.bin'].length))
  t.is(head.headers['content-type'], 'application/octet-stream')
  t.is(head.headers.etag, etagOf('mid.bin'))
  t.is(head.headers['last-modified'], LAST_MODIFIED)
  t.is(head.body.length, 0)
  t.is(next.status, 200)
  t.true(next.body.equals(files['notes.txt']), 'the HEAD response carried no body bytes')
  t.is(connection.leftover, 0)
  const headWithRange = await get(port, '/mid.bin', { Range: 'bytes=0-9' }, 'HEAD')
  t.is(headWithRange.status, 206, 'HEAD answers with the headers of the GET')
  t.is(headWithRange.headers['content-range'], `bytes 0-9/${files['mid.bin'].length}`)
  t.is(headWithRange.body.length, 0)
})

test('an empty file: 200 with Content-Length 0; any Range is 416 bytes */0', async (t) => {
  const port = await serveStatic(t)
  const reply = await get(port, '/empty.txt')
  t.is(reply.status, 200)
  t.is(reply.headers['content-length'], '0')
  t.is(reply.body.length, 0)
  for (const range of ['bytes=0-', 'bytes=0-0', 'bytes=-1']) {
    const ranged = await get(port, '/empty.txt', { Range: range })
    t.is(ranged.status, 416, range)
    t.is(ranged.headers['content-range'], 'bytes */0', range)
  }
})

// ---------------------------------------------------------------------------------------------
// Range.

test('single ranges: 206 with Content-Range and exactly those bytes, at the edges too', async (t) => {
  const port = await serveStatic(t)
  const data = files['mid.bin']
  const size = data.length
  const cases: Array<[string, number, number]> = [
    ['bytes=0-0', 0, 0],
    ['bytes=-1', size - 1, size - 1],
    ['bytes=0-', 0, size - 1],
    ['bytes=500-', 500, size - 1],
    ['bytes=-500', size - 500, size - 1],
    ['bytes=1000-1999', 1000, 1999],
    [`bytes=${size - 1}-${size - 1}`, size - 1, size - 1],
    [`bytes=100-${size + 1000}`, 100, size - 1],
    [`bytes=-${size + 1000}`, 0, size - 1],
    ['bytes=0-99999999999999999999', 0, size - 1],
    ['BYTES = 7-8', 7, 8],
    ['bytes=10-19,', 10, 19],
  ]
  for (const [range, start, end] of cases) {
    const reply = await get(port, '/mid.bin', { Range: range })
    t.is(reply.status, 206, range)
    t.is(reply.headers['content-range'], `bytes ${start}-${end}/${size}`, range)
    t.is(reply.headers['content-length'], String(end - start + 1), range)
    t.is(sha256(reply.body), sha256(data.subarray(start, end + 1)), range)
  }
  const big = await get(port, '/big.bin', { Range: `bytes=${MiB + 3}-${3 * MiB}` })
  t.is(big.status, 206)
  t.is(sha256(big.body), sha256(files['big.bin'].subarray(MiB + 3, 3 * MiB + 1)))
})

test('unsatisfiable ranges: 416 with Content-Range bytes */size', async (t) => {
  const port = await serveStatic(t)
  const size = files['mid.bin'].length
  for (const range of [`bytes=${size}-`, `bytes=${size + 10}-${size + 20}`, 'bytes=-0', `bytes=${size}-,${size + 1}-`]) {
    const reply = await get(port, '/mid.bin', { Range: range })
    t.is(reply.status, 416, range)
    t.is(reply.headers['content-range'], `bytes */${size}`, range)
  }
})

test('a malformed Range, or ranges that look like an attack, get 200 with the whole file', async (t) => {
  const port = await serveStatic(t)
  for (const range of [
    'bytes=0-,0-,0-',
    'bytes=0-9,5-14,10-19',
    'bytes=abc',
    'items=0-1',
    'bytes=5-1',
    'bytes=',
    'bytes=-',
    'bytes=1-2-3',
    '0-1',
    'bytes=0x10-',
  ]) {
    const reply = await get(port, '/mid.bin', { Range: range })
    t.is(reply.status, 200, range)
    t.is(reply.headers['content-range'], undefined, range)
    t.is(sha256(reply.body), sha256(files['mid.bin']), range)
  }
})

test('If-Range: the current ETag or Last-Modified gives 206; anything else gives 200 with the whole file', async (t) => {
  const port = await serveStatic(t)
  const ranged = (ifRange: string) => get(port, '/mid.bin', { Range: 'bytes=10-19', 'If-Range': ifRange })
  t.is((await ranged(etagOf('mid.bin'))).status, 206)
  t.is((await ranged(LAST_MODIFIED)).status, 206)
  const stale = await ranged('"1-1-1"')
  t.is(stale.status, 200)
  t.is(sha256(stale.body), sha256(files['mid.bin']))
  t.is((await ranged('Mon, 01 Jan 2024 00:00:00 GMT')).status, 200)
  t.is((await ranged('not a date')).status, 200)
})

// ---------------------------------------------------------------------------------------------
// Preconditions.

test('If-None-Match and If-Modified-Since: 304 without a body, keeping ETag, Last-Modified and Cache-Control', async (t) => {
  const port = await serveStatic(t, { maxAge: 60 })
  const etag = etagOf('notes.txt')
  const notModified: Array<Record<string, string>> = [
    { 'If-None-Match': etag },
    { 'If-None-Match': `W/${etag}` }, // the weak form matches weakly
    { 'If-None-Match': `"other", ${etag}, "more"` },
    { 'If-None-Match': '*' },
    { 'If-Modified-Since': LAST_MODIFIED },
    { 'If-Modified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' },
  ]
  for (const headers of notModified) {
    const reply = await get(port, '/notes.txt', headers)
    t.is(reply.status, 304, JSON.stringify(headers))
    t.is(reply.body.length, 0)
    t.is(reply.headers.etag, etag)
    t.is(reply.headers['last-modified'], LAST_MODIFIED)
    t.is(reply.headers['cache-control'], 'public, max-age=60')
  }
  const modified: Array<Record<string, string>> = [
    { 'If-None-Match': '"other"' },
    { 'If-None-Match': 'W/"c-0"' },
    { 'If-Modified-Since': 'Tue, 02 Jan 2024 03:04:04 GMT' },
    { 'If-Modified-Since': 'garbage' },
    // If-Modified-Since is ignored when If-None-Match is present (RFC 9110 §13.1.3).
    { 'If-None-Match': '"other"', 'If-Modified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' },
  ]
  for (const headers of modified) {
    const reply = await get(port, '/notes.txt', headers)
    t.is(reply.status, 200, JSON.stringify(headers))
    t.true(reply.body.equals(files['notes.txt']))
  }
  const head = await get(port, '/notes.txt', { 'If-None-Match': etag }, 'HEAD')
  t.is(head.status, 304)
})

test('If-Match and If-Unmodified-Since: 412 when they fail, in RFC 9110 order', async (t) => {
  const port = await serveStatic(t)
  const etag = etagOf('notes.txt')
  const status = async (headers: Record<string, string>) => (await get(port, '/notes.txt', headers)).status
  t.is(await status({ 'If-Match': '*' }), 200)
  t.is(await status({ 'If-Match': etag }), 200)
  t.is(await status({ 'If-Match': `"a", ${etag}` }), 200)
  t.is(await status({ 'If-Match': '"other"' }), 412)
  t.is(await status({ 'If-Unmodified-Since': LAST_MODIFIED }), 200)
  t.is(await status({ 'If-Unmodified-Since': 'Tue, 02 Jan 2024 03:04:04 GMT' }), 412)
  t.is(await status({ 'If-Unmodified-Since': 'garbage' }), 200)
  // If-Unmodified-Since is ignored when If-Match is present.
  t.is(await status({ 'If-Match': etag, 'If-Unmodified-Since': 'Mon, 01 Jan 2024 00:00:00 GMT' }), 200)
  // 412 is decided before 304.
  t.is(await status({ 'If-Match': '"other"', 'If-None-Match': etag }), 412)
  // A precondition that passes lets the Range through.
  t.is(await status({ 'If-Match': etag, Range: 'bytes=0-1' }), 206)
  const failed = await get(port, '/notes.txt', { 'If-Match': '"other"' })
  t.false(failed.body.includes(files['notes.txt']))
})

// ---------------------------------------------------------------------------------------------
// Keep-alive and pipelining.

test('keep-alive: 206, 304, HEAD and 200 in turn on one connection, each framed by Content-Length', async (t) => {
  const port = await serveStatic(t)
  const connection = raw(t, port)
  const data = files['big.bin']
  connection.send(request('/big.bin', { Range: 'bytes=100-2000099' }))
  const partial = await connection.next()
  connection.send(request('/big.bin', { 'If-None-Match': etagOf('big.bin') }))
  const notModified = await connection.next()
  connection.send(request('/mid.bin', {}, 'HEAD'))
  const head = await connection.next('HEAD')
  connection.send(request('/big.bin'))
  const whole = await connection.next()
  t.is(partial.status, 206)
  t.is(sha256(partial.body), sha256(data.subarray(100, 2_000_100)))
  t.is(notModified.status, 304)
  t.is(head.status, 200)
  t.is(whole.status, 200)
  t.is(sha256(whole.body), sha256(data))
  t.is(connection.leftover, 0)
  t.false(connection.socket.destroyed, 'the connection is still open')
})

test('pipelining: requests sent at once are answered in order, each file after its own headers', async (t) => {
  const port = await serveStatic(t)
  const connection = raw(t, port)
  connection.send(
    request('/big.bin') +
      request('/mid.bin', { Range: 'bytes=-1000' }) +
      request('/notes.txt', { 'If-None-Match': etagOf('notes.txt') }) +
      request('/image.png'),
  )
  const [big, mid, notes, image] = [await connection.next(), await connection.next(), await connection.next(), await connection.next()]
  t.is(sha256(big.body), sha256(files['big.bin']))
  t.is(mid.status, 206)
  t.is(sha256(mid.body), sha256(files['mid.bin'].subarray(-1000)))
  t.is(notes.status, 304)
  t.is(image.status, 200)
  t.true(image.body.equals(files['image.png']))
  t.is(connection.leftover, 0)
})

// ---------------------------------------------------------------------------------------------
// HTTPS.

/** A self-signed certificate for CN=localhost, made by openssl in the test's fixture dir. */
function selfSigned(): { key: Buffer; cert: Buffer } {
  const dir = fs.mkdtempSync(path.join(base, 'tls-'))
  const keyFile = path.join(dir, 'k')
  const certFile = path.join(dir, 'c')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyFile, '-out', certFile, '-subj', '/CN=localhost', '-days', '1'], {
    stdio: 'ignore',
    timeout: 30_000,
  })
  return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }
}

function httpsGet(port: number, target: string, headers: Record<string, string> = {}): Promise<Reply> {
  return within(
    new Promise<Reply>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port, path: target, headers, rejectUnauthorized: false, agent: false }, (response) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, headers: response.headers as Record<string, string>, body: Buffer.concat(chunks) }),
          )
          response.on('error', reject)
        })
        .on('error', reject)
    }),
    10_000,
    `https GET ${target}`,
  )
}

test('HTTPS: the same responses through the stream fallback, since bytes on a TLS socket must be encrypted', async (t) => {
  const reports: TransferReport[] = []
  const onReport = (report: unknown) => reports.push(report as TransferReport)
  transferChannel.subscribe(onReport)
  t.teardown(() => transferChannel.unsubscribe(onReport))
  const port = await listen(t, https.createServer(selfSigned(), createStaticHandler(root)))
  const whole = await httpsGet(port, '/big.bin')
  t.is(whole.status, 200)
  t.is(sha256(whole.body), sha256(files['big.bin']))
  const partial = await httpsGet(port, '/mid.bin', { Range: 'bytes=7-70006' })
  t.is(partial.status, 206)
  t.is(partial.headers['content-range'], `bytes 7-70006/${files['mid.bin'].length}`)
  t.is(sha256(partial.body), sha256(files['mid.bin'].subarray(7, 70_007)))
  t.is((await httpsGet(port, '/notes.txt', { 'If-None-Match': etagOf('notes.txt') })).status, 304)
  const overTls = reports.filter((report) => report.target instanceof tls.TLSSocket)
  t.is(overTls.length, 2, 'one transfer per body: the 304 sends none')
  t.true(overTls.every((report) => report.method === 'stream' && !report.zeroCopy && report.reason === 'the socket is a TLS socket'))
})

// ---------------------------------------------------------------------------------------------
// serveFile.

test('serveFile: 404 for a missing path, a directory, a path through a file, and a FIFO (without waiting for a writer)', async (t) => {
  const outcomes: unknown[] = []
  const port = await serve(t, (req, res) => {
    const file = decodeURIComponent((req.url ?? '/').slice(1))
    serveFile(req, res, file).then(
      () => outcomes.push('resolved'),
      (error) => outcomes.push(error),
    )
  })
  for (const file of [path.join(root, 'missing.txt'), root, path.join(root, 'notes.txt', 'child'), path.join(root, 'fifo')]) {
    const reply = await get(port, `/${encodeURIComponent(file)}`)
    t.is(reply.status, 404, file)
    t.is(reply.headers['content-type'], 'text/plain; charset=utf-8')
  }
  t.deepEqual(outcomes, ['resolved', 'resolved', 'resolved', 'resolved'])
})

test('serveFile options: Cache-Control, validators, Accept-Ranges, Content-Type and extra headers', async (t) => {
  const file = path.join(root, 'mid.bin')
  const optionsByPath: Record<string, Parameters<typeof serveFile>[3]> = {
    '/immutable': { maxAge: 31_536_000.9, immutable: true },
    '/bare': { cacheControl: false, etag: false, lastModified: false },
    '/noranges': { acceptRanges: false },
    '/typed': { contentType: 'video/mp4', headers: { 'X-Extra': 'yes', 'cache-control': 'no-store' } },
  }
  const port = await serve(t, (req, res) => {
    if (req.url === '/preset') res.setHeader('Content-Type', 'application/x-preset')
    void serveFile(req, res, file, optionsByPath[req.url ?? ''])
  })
  t.is((await get(port, '/immutable')).headers['cache-control'], 'public, max-age=31536000, immutable')
  const bare = await get(port, '/bare', { 'If-Modified-Since': 'Wed, 01 Jan 2025 00:00:00 GMT' })
  t.is(bare.status, 200, 'a validator that is off is not used either')
  t.is(bare.headers['cache-control'], undefined)
  t.is(bare.headers.etag, undefined)
  t.is(bare.headers['last-modified'], undefined)
  const noRanges = await get(port, '/noranges', { Range: 'bytes=0-0' })
  t.is(noRanges.status, 200)
  t.is(noRanges.headers['accept-ranges'], 'none')
  t.is(noRanges.body.length, files['mid.bin'].length)
  const typed = await get(port, '/typed')
  t.is(typed.headers['content-type'], 'video/mp4')
  t.is(typed.headers['x-extra'], 'yes')
  t.is(typed.headers['cache-control'], 'no-store', "one Cache-Control, the caller's, whatever the case of its name")
  t.is((await get(port, '/preset')).headers['content-type'], 'application/x-preset', 'a Content-Type already set is kept')
})

test('serveFile rejects before writing anything for invalid options and for headers already sent', async (t) => {
  const errors: Array<NodeJS.ErrnoException> = []
  const port = await serve(t, (req, res) => {
    if (req.url === '/sent') res.writeHead(200, { 'Content-Length': '2' }).write('ok')
    const options = req.url === '/bad' ? ({ maxAge: -1 } as const) : undefined
    serveFile(req, res, path.join(root, 'notes.txt'), options).catch((error: NodeJS.ErrnoException) => {
      errors.push(error)
      if (!res.headersSent) res.writeHead(500).end('caller answered')
      else res.end()
    })
  })
  const bad = await get(port, '/bad')
  t.is(bad.status, 500)
  t.is(bad.body.toString(), 'caller answered')
  const sent = await get(port, '/sent')
  t.is(sent.body.toString(), 'ok')
  t.is(errors[0].code, 'ERR_OUT_OF_RANGE', 'a negative maxAge is out of range, as Node says of a negative number')
  t.is(errors[1].code, 'ERR_HTTP_HEADERS_SENT')
})

/** A server whose one response is a 256 MiB sparse file to a client that stops reading after the first bytes. */
async function stalledTransfer(t: ExecutionContext, options: { signal?: AbortSignal }) {
  const dir = fs.mkdtempSync(path.join(base, 'stall-'))
  const file = path.join(dir, 'huge.bin')
  fs.writeFileSync(file, pattern(64 * 1024, 9))
  fs.truncateSync(file, 256 * MiB)
  let outcome!: Promise<{ error?: NodeJS.ErrnoException; headersSent: boolean }>
  const port = await serve(t, (req, res) => {
    outcome = serveFile(req, res, file, options).then(
      () => ({ headersSent: res.headersSent }),
      (error: NodeJS.ErrnoException) => ({ error, headersSent: res.headersSent }),
    )
  })
  const client = net.connect(port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(request('/huge.bin'))
  await within(new Promise((resolve) => client.once('data', resolve)), 10_000, 'the first bytes')
  client.pause()
  const closed = new Promise<void>((resolve) => client.once('close', () => resolve()))
  return {
    file,
    client,
    outcome: () => within(outcome, 10_000, 'serveFile'),
    closed: () => {
      client.resume()
      return within(closed, 10_000, 'the client connection closing')
    },
  }
}

test('aborting the signal mid-body rejects with AbortError and closes the connection', async (t) => {
  const controller = new AbortController()
  const transfer = await stalledTransfer(t, { signal: controller.signal })
  controller.abort()
  const { error, headersSent } = await transfer.outcome()
  t.is(error?.name, 'AbortError')
  t.true(headersSent)
  await transfer.closed()
  t.pass('the client saw the connection close')
})

test('a file that shrinks mid-body closes the connection instead of misframing keep-alive, and serveFile rejects', async (t) => {
  const transfer = await stalledTransfer(t, {})
  fs.truncateSync(transfer.file, 1 * MiB)
  transfer.client.resume()
  const { error, headersSent } = await transfer.outcome()
  t.is(error?.code, 'ERR_HTTP_CONTENT_LENGTH_MISMATCH')
  t.true(headersSent)
  await transfer.closed()
})

test('a pipelined request whose connection closes before its turn settles quietly, without writing', async (t) => {
  const dir = fs.mkdtempSync(path.join(base, 'pipelined-'))
  const huge = path.join(dir, 'huge.bin')
  fs.writeFileSync(huge, '')
  fs.truncateSync(huge, 256 * MiB)
  const outcomes: Array<{ url?: string; error?: unknown; headersSent: boolean }> = []
  const port = await serve(t, (req, res) => {
    serveFile(req, res, huge).then(
      () => outcomes.push({ url: req.url, headersSent: res.headersSent }),
      (error: unknown) => outcomes.push({ url: req.url, error, headersSent: res.headersSent }),
    )
  })
  const client = net.connect(port, '127.0.0.1')
  client.on('error', () => {})
  t.teardown(() => client.destroy())
  client.write(request('/first') + request('/second'))
  await within(new Promise((resolve) => client.once('data', resolve)), 10_000, 'the first bytes')
  client.destroy()
  for (let attempt = 0; attempt < 100 && outcomes.length < 2; attempt++) await tick(50)
  t.deepEqual(
    outcomes.sort((a, b) => String(a.url).localeCompare(String(b.url))),
    [
      { url: '/first', headersSent: true },
      { url: '/second', headersSent: false },
    ],
  )
})

test('with server.setTimeout, the idle timer is re-armed as the kernel sends, as stream writes would', async (t) => {
  let rearmed = 0
  const server = http.createServer((req, res) => {
    // Node re-arms a socket's idle timer through _unrefTimer on every stream write.
    const socket = req.socket as typeof req.socket & { _unrefTimer: () => void }
    const unrefTimer = socket._unrefTimer.bind(socket)
    socket._unrefTimer = () => {
      rearmed++
      unrefTimer()
    }
    void serveFile(req, res, path.join(root, 'big.bin'))
  })
  server.setTimeout(60_000)
  const port = await listen(t, server)
  const reply = await rawOnce(t, port, '/big.bin')
  t.is(sha256(reply.body), sha256(files['big.bin']))
  // One re-arm for the headers (a stream write); the body's 4 MiB moves in the kernel and must
  // re-arm it too: at least once per 2 MiB chunk.
  t.true(rearmed >= 3, `re-armed ${rearmed} times`)
})

// ---------------------------------------------------------------------------------------------
// The static handler: directories, dotfiles, traversal, methods, middleware.

test('directories: index.html, 301 to the slash form (query kept), 404 without an index or with index: false', async (t) => {
  const port = await serveStatic(t)
  const home = await get(port, '/')
  t.is(home.status, 200)
  t.true(home.body.equals(files['index.html']))
  t.is(home.headers['content-type'], 'text/html; charset=utf-8')
  t.true((await get(port, '/sub/')).body.equals(files['sub/index.html']))
  const redirect = await get(port, '/sub?x=1')
  t.is(redirect.status, 301)
  t.is(redirect.headers.location, '/sub/?x=1')
  const slashes = await rawOnce(t, port, '//sub')
  t.is(slashes.status, 301)
  t.is(slashes.headers.location, '/sub/', 'never a protocol-relative //host redirect')
  t.is((await get(port, '/noindex/')).status, 404)
  t.true((await get(port, '/noindex/file.txt')).body.equals(files['noindex/file.txt']))
  t.is((await get(port, '/notes.txt/')).status, 404, 'a file is not a directory')
  t.is((await get(port, '/link-in')).status, 200, 'a symlink inside root is served')
  const noIndex = await serveStatic(t, { index: false })
  t.is((await get(noIndex, '/')).status, 404)
  t.is((await get(noIndex, '/sub/')).status, 404)
})

test('dotfiles: ignored (404) by default, 403 with deny, served with allow', async (t) => {
  const ignore = await serveStatic(t)
  const deny = await serveStatic(t, { dotfiles: 'deny' })
  const allow = await serveStatic(t, { dotfiles: 'allow' })
  for (const target of ['/.env', '/.git/config', '/sub/.hidden', '/%2eenv']) {
    const reply = await get(ignore, target)
    t.is(reply.status, 404, target)
    t.false(reply.body.includes(SECRET), target)
    t.is((await get(deny, target)).status, 403, target)
  }
  t.true((await get(allow, '/.env')).body.equals(files['.env']))
  t.true((await get(allow, '/sub/.hidden')).body.equals(files['sub/.hidden']))
})

test('traversal: no request target reaches a byte outside root', async (t) => {
  const forbidden = new Set([400, 403, 404])
  const targets = [
    '/../secret',
    '/%2e%2e/secret',
    '/%2E%2E/secret',
    '/..%2fsecret',
    '/..%2Fsecret',
    '/%2e%2e%2fsecret',
    '/..\\secret',
    '/..%5csecret',
    '/sub/../../secret',
    '/sub/%2e%2e/%2e%2e/secret',
    '/./../secret',
    '/link-out',
    '/dir-out/secret',
    '/dir-out/',
    '/secret%00',
    '/notes.txt%00.html',
    `/${path.join(base, 'secret')}`,
    `/%2F${encodeURIComponent(path.join(base, 'secret').slice(1))}`,
    `http://localhost/../secret`,
    '/%252e%252e/secret',
  ]
  for (const options of [{}, { dotfiles: 'allow' } as const]) {
    const port = await serveStatic(t, options)
    for (const target of targets) {
      for (const method of ['GET', 'HEAD']) {
        const reply = await rawOnce(t, port, target, method)
        t.true(forbidden.has(reply.status), `${method} ${target} → ${reply.status}`)
        t.false(reply.all.includes(SECRET), `${method} ${target} leaked the secret`)
      }
    }
    t.is((await rawOnce(t, port, '/../secret')).status, 403)
    t.is((await rawOnce(t, port, '/secret%00')).status, 400)
    t.is((await rawOnce(t, port, '/link-out')).status, 404)
  }
})

test('bad request targets: malformed percent-encoding is 400', async (t) => {
  const port = await serveStatic(t)
  for (const target of ['/%', '/%E0%A4%A', '/%zz', '/%C0%AF']) t.is((await rawOnce(t, port, target)).status, 400, target)
})

test('methods other than GET and HEAD: 405 with Allow: GET, HEAD', async (t) => {
  const port = await serveStatic(t)
  for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']) {
    const reply = await get(port, '/notes.txt', {}, method)
    t.is(reply.status, 405, method)
    t.is(reply.headers.allow, 'GET, HEAD', method)
  }
})

type Middleware = (req: http.IncomingMessage, res: http.ServerResponse, next: (err?: unknown) => void) => void

/** A connect-style chain of middleware without a framework: errors skip to a 500. */
function chain(...layers: Middleware[]): http.RequestListener {
  return (req, res) => {
    let index = 0
    const next = (error?: unknown) => {
      if (error !== undefined) {
        res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`error from next: ${(error as NodeJS.ErrnoException).code}`)
        return
      }
      const layer = layers[index++]
      layer(req, res, next)
    }
    next()
  }
}

const finalHandler: Middleware = (req, res) => {
  res.writeHead(404, { 'Content-Type': 'text/plain' }).end(`next handled ${req.method} ${req.url}`)
}

test('middleware: hits are served, misses and other methods call next(), mounted under a prefix', async (t) => {
  const calls: string[] = []
  const statics = createStaticHandler(root)
  const mount: Middleware = (req, res, next) => {
    // What Express does under app.use('/static', …): req.url becomes relative, originalUrl stays.
    const url = req.url ?? '/'
    if (!url.startsWith('/static/') && url !== '/static') return next()
    Object.assign(req, { originalUrl: url })
    req.url = url.slice('/static'.length) || '/'
    statics(req, res, (error) => {
      calls.push(`next(${error === undefined ? '' : 'error'}) for ${req.method} ${req.url}`)
      req.url = url
      next(error)
    })
  }
  const port = await serve(t, chain(mount, finalHandler))
  const hit = await get(port, '/static/notes.txt')
  t.is(hit.status, 200)
  t.true(hit.body.equals(files['notes.txt']))
  t.true((await get(port, '/static/mid.bin', { Range: 'bytes=0-9' })).body.equals(files['mid.bin'].subarray(0, 10)))
  const miss = await get(port, '/static/missing.txt')
  t.is(miss.body.toString(), 'next handled GET /static/missing.txt')
  const dotfile = await get(port, '/static/.env')
  t.is(dotfile.body.toString(), 'next handled GET /static/.env')
  const post = await get(port, '/static/notes.txt', {}, 'POST')
  t.is(post.body.toString(), 'next handled POST /static/notes.txt')
  const redirect = await get(port, '/static/sub')
  t.is(redirect.status, 301)
  t.is(redirect.headers.location, '/static/sub/', 'redirects use the original URL')
  t.is((await get(port, '/elsewhere')).body.toString(), 'next handled GET /elsewhere')
  t.deepEqual(calls, ['next() for GET /missing.txt', 'next() for GET /.env', 'next() for POST /notes.txt'])
  const traversal = await rawOnce(t, port, '/static/../secret')
  t.false(traversal.all.includes(SECRET))
})

test('middleware with fallthrough: false answers misses itself', async (t) => {
  let nextCalls = 0
  const statics = createStaticHandler(root, { fallthrough: false })
  const port = await serve(
    t,
    chain(
      (req, res, next) =>
        statics(req, res, () => {
          nextCalls++
          next()
        }),
      finalHandler,
    ),
  )
  t.is((await get(port, '/missing.txt')).status, 404)
  t.is((await get(port, '/notes.txt', {}, 'DELETE')).status, 405)
  t.is(nextCalls, 0)
})

test('createStaticHandler validates its options up front, with the codes Node gives', (t) => {
  const cases: Array<{ root?: unknown; options?: unknown; code: string; message?: RegExp }> = [
    // Not a string is a type error; a string that cannot be a root is a bad value.
    { root: 1, code: 'ERR_INVALID_ARG_TYPE' },
    { root: '', code: 'ERR_INVALID_ARG_VALUE' },
    { root: 'a\0b', code: 'ERR_INVALID_ARG_VALUE' },
    { options: 'fast', code: 'ERR_INVALID_ARG_TYPE' },
    {
      options: { dotfiles: 'maybe' },
      code: 'ERR_INVALID_ARG_VALUE',
      message: /^The property 'options.dotfiles' must be one of: 'ignore', 'allow', 'deny'\. Received 'maybe'$/,
    },
    { options: { dotfiles: true }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { index: '../x' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { index: '' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { index: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { maxAge: 'x' }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { maxAge: -1 }, code: 'ERR_OUT_OF_RANGE' },
    { options: { maxAge: Number.NaN }, code: 'ERR_OUT_OF_RANGE' },
    { options: { maxAge: Infinity }, code: 'ERR_OUT_OF_RANGE' },
    { options: { etag: 'yes' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { etag: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { fallthrough: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { contentType: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { headers: null }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { signal: { aborted: true } }, code: 'ERR_INVALID_ARG_TYPE' },
  ]
  for (const { root: badRoot = root, options, code, message } of cases) {
    const what = `createStaticHandler(${String(badRoot)}, ${JSON.stringify(options)})`
    t.throws(() => createStaticHandler(badRoot as string, options as StaticOptions), { code, ...(message && { message }) }, what)
  }
  t.notThrows(() => createStaticHandler(root, { maxAge: 1.5, index: false }), 'a fraction of a second is floored, not refused')
  t.notThrows(() => createStaticHandler(root, null as unknown as StaticOptions), 'null is no options')
})

// ---------------------------------------------------------------------------------------------
// Behind a compression middleware, and over HTTP/2.

interface ClientReply extends Reply {
  socket: net.Socket
}

/** A GET with Node's http client on `agent`; the body as it came off the wire (not decoded). */
function agentGet(agent: http.Agent, port: number, target: string, headers: Record<string, string> = {}): Promise<ClientReply> {
  return within(
    new Promise<ClientReply>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port, path: target, headers, agent }, (response) => {
          const chunks: Buffer[] = []
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              headers: response.headers as Record<string, string>,
              body: Buffer.concat(chunks),
              socket: response.socket,
            }),
          )
          response.on('error', reject)
        })
        .on('error', reject)
    }),
    10_000,
    `GET ${target}`,
  )
}

test('behind compression(): the client gets gzip-decoded bytes equal to the file, ranges too, all on one kept-alive connection', async (t) => {
  const dir = tempDir(t)
  const text = Buffer.from(Array.from({ length: 20_000 }, (_, line) => `line ${line} of a compressible text file\n`).join(''))
  fs.writeFileSync(path.join(dir, 'page.txt'), text)
  const binary = pattern(200_000, 11)
  fs.writeFileSync(path.join(dir, 'image.png'), binary)
  const app = express()
  app.use(compression())
  app.use(createStaticHandler(dir))
  const server = http.createServer(app)
  let connections = 0
  server.on('connection', () => connections++)
  const port = await listen(t, server)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const gzip = { 'Accept-Encoding': 'gzip' }

  const whole = await agentGet(agent, port, '/page.txt', gzip)
  t.is(whole.status, 200)
  t.is(whole.headers['content-encoding'], 'gzip')
  t.is(whole.headers['content-length'], undefined, 'compression() dropped it: the body is chunked')
  t.is(sha256(zlib.gunzipSync(whole.body)), sha256(text))
  const ranged = await agentGet(agent, port, '/page.txt', { ...gzip, Range: 'bytes=1000-200999' })
  t.is(ranged.status, 206)
  t.is(ranged.headers['content-range'], `bytes 1000-200999/${text.length}`)
  t.is(sha256(zlib.gunzipSync(ranged.body)), sha256(text.subarray(1000, 201_000)))
  // Not compressible: compression() passes it through its own res.write, unchanged.
  const blob = await agentGet(agent, port, '/image.png', gzip)
  t.is(blob.status, 200)
  t.is(blob.headers['content-encoding'], undefined)
  t.is(sha256(blob.body), sha256(binary))
  t.is(blob.socket, whole.socket, 'the client kept one socket')
  t.is(connections, 1, 'the server saw one connection')
  t.deepEqual(unexpected, [])
})

test('behind compression(): the res.write path keeps backpressure, honours the abort signal mid-body, and settles quietly when the client leaves', async (t) => {
  const dir = tempDir(t)
  // image/png is not compressible: compression() passes the bytes through its own res.write.
  const file = sparseFile(dir, 'huge.png', 256 * MiB)
  const controller = new AbortController()
  let written = 0
  const outcomes: Record<string, { error?: NodeJS.ErrnoException; headersSent: boolean }> = {}
  const app = express()
  app.use(compression())
  app.use((_req: express.Request, res: express.Response, next: express.NextFunction) => {
    const write = res.write.bind(res) as (chunk: Buffer) => boolean
    res.write = ((chunk: Buffer) => {
      written += chunk.length
      return write(chunk)
    }) as typeof res.write
    next()
  })
  app.get('/:case', (req: express.Request, res: express.Response) => {
    const options = req.params.case === 'abort' ? { signal: controller.signal } : {}
    serveFile(req, res, file, options).then(
      () => (outcomes[String(req.params.case)] = { headersSent: res.headersSent }),
      (error: NodeJS.ErrnoException) => (outcomes[String(req.params.case)] = { error, headersSent: res.headersSent }),
    )
  })
  const port = await listen(t, http.createServer(app))
  const connect = async (target: string) => {
    const client = net.connect(port, '127.0.0.1')
    client.on('error', () => {})
    t.teardown(() => client.destroy())
    client.write(request(target, { 'Accept-Encoding': 'gzip' }))
    await within(new Promise((resolve) => client.once('data', resolve)), 10_000, 'the first bytes')
    client.pause()
    return client
  }

  const aborted = await connect('/abort')
  t.true(await waitUntilStalled(() => written), 'the body stalls behind the paused client')
  t.true(written < 256 * MiB, 'backpressure: the file is not read into memory ahead of the client')
  controller.abort()
  t.true(await eventually(() => outcomes.abort !== undefined), 'serveFile settled')
  t.is(outcomes.abort.error?.name, 'AbortError')
  t.true(outcomes.abort.headersSent)
  const closed = new Promise<void>((resolve) => aborted.once('close', () => resolve()))
  aborted.resume()
  await within(closed, 10_000, 'the aborted connection closing')

  const leaving = await connect('/leave')
  leaving.destroy()
  t.true(await eventually(() => outcomes.leave !== undefined), 'serveFile settled')
  t.deepEqual(outcomes.leave, { headersSent: true }, 'resolved: nothing is left to answer')
  t.deepEqual(unexpected, [])
})

test('a writeHead hook that drops Content-Length: the body goes through res.write, chunked by Node, and keep-alive stays framed', async (t) => {
  const dir = tempDir(t)
  const data = pattern(500_000, 13)
  fs.writeFileSync(path.join(dir, 'data.bin'), data)
  const statics = createStaticHandler(dir)
  const server = http.createServer((req, res) => {
    // What a middleware hooking writeHead (on-headers) may do; Node then frames the body itself.
    const writeHead = res.writeHead.bind(res) as (status: number) => http.ServerResponse
    res.writeHead = ((status: number) => {
      res.removeHeader('Content-Length')
      return writeHead(status)
    }) as typeof res.writeHead
    statics(req, res)
  })
  let connections = 0
  server.on('connection', () => connections++)
  const port = await listen(t, server)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const whole = await agentGet(agent, port, '/data.bin')
  t.is(whole.status, 200)
  t.is(whole.headers['transfer-encoding'], 'chunked')
  t.is(sha256(whole.body), sha256(data))
  const ranged = await agentGet(agent, port, '/data.bin', { Range: 'bytes=7-300006' })
  t.is(ranged.status, 206)
  t.is(sha256(ranged.body), sha256(data.subarray(7, 300_007)))
  t.is(connections, 1)
})

interface Http2Reply {
  status: number
  headers: http2.IncomingHttpHeaders
  body: Buffer
}

function http2Request(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<Http2Reply> {
  return within(
    new Promise<Http2Reply>((resolve, reject) => {
      const stream = client.request(headers)
      let received: http2.IncomingHttpHeaders = {}
      const chunks: Buffer[] = []
      stream.on('response', (responseHeaders) => (received = responseHeaders))
      stream.on('data', (chunk: Buffer) => chunks.push(chunk))
      stream.on('end', () => resolve({ status: Number(received[':status']), headers: received, body: Buffer.concat(chunks) }))
      stream.on('error', reject)
    }),
    10_000,
    `HTTP/2 ${String(headers[':method'] ?? 'GET')} ${String(headers[':path'])}`,
  )
}

test('HTTP/2 compatibility API: the statuses, headers and exact bytes of HTTP/1, ranges included, and every fd closed', async (t) => {
  const dir = tempDir(t)
  const data = pattern(3 * MiB + 5, 12)
  const file = path.join(dir, 'video.bin')
  fs.writeFileSync(file, data)
  fs.utimesSync(file, MTIME, MTIME)
  const etag = strongEtagOf(file)
  const outcomes: unknown[] = []
  let wrappedBytes = 0
  const server = http2.createServer((req, res) => {
    if (req.url.startsWith('/wrapped')) {
      // What a body-transforming middleware does: the body must go through this write.
      const write = res.write.bind(res) as (chunk: Buffer) => boolean
      res.write = ((chunk: Buffer) => {
        wrappedBytes += chunk.length
        return write(chunk)
      }) as typeof res.write
    }
    serveFile(req, res, req.url === '/missing' ? path.join(dir, 'missing') : file).then(
      () => outcomes.push('resolved'),
      (error: unknown) => outcomes.push(error),
    )
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()))
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`)
  client.on('error', () => {})
  t.teardown(() => {
    client.destroy()
    server.close()
  })
  const request = (target: string, headers: http2.OutgoingHttpHeaders = {}, method = 'GET') =>
    http2Request(client, { ':path': target, ':method': method, ...headers })

  const whole = await request('/video.bin')
  t.is(whole.status, 200)
  t.is(whole.headers['content-length'], String(data.length))
  t.is(whole.headers['content-type'], 'application/octet-stream')
  t.is(whole.headers['accept-ranges'], 'bytes')
  t.is(whole.headers.etag, etag)
  t.is(whole.headers['last-modified'], LAST_MODIFIED)
  t.is(sha256(whole.body), sha256(data))
  const ranged = await request('/video.bin', { range: 'bytes=10-99' })
  t.is(ranged.status, 206)
  t.is(ranged.headers['content-range'], `bytes 10-99/${data.length}`)
  t.is(ranged.headers['content-length'], '90')
  t.true(ranged.body.equals(data.subarray(10, 100)))
  const suffix = await request('/video.bin', { range: 'bytes=-1000000' })
  t.is(suffix.status, 206)
  t.is(sha256(suffix.body), sha256(data.subarray(-1_000_000)))
  const head = await request('/video.bin', {}, 'HEAD')
  t.is(head.status, 200)
  t.is(head.headers['content-length'], String(data.length))
  t.is(head.body.length, 0)
  const notModified = await request('/video.bin', { 'if-none-match': etag })
  t.is(notModified.status, 304)
  t.is(notModified.headers.etag, etag)
  t.is(notModified.body.length, 0)
  t.is((await request('/video.bin', { 'if-match': '"other"' })).status, 412)
  const unsatisfiable = await request('/video.bin', { range: `bytes=${data.length}-` })
  t.is(unsatisfiable.status, 416)
  t.is(unsatisfiable.headers['content-range'], `bytes */${data.length}`)
  t.is((await request('/missing')).status, 404)
  const wrapped = await request('/wrapped', { range: `bytes=5-${2 * MiB}` })
  t.is(wrapped.status, 206)
  t.is(sha256(wrapped.body), sha256(data.subarray(5, 2 * MiB + 1)))
  t.is(wrappedBytes, 2 * MiB - 4, 'the body went through the wrapped write')

  t.true(await eventually(() => outcomes.length === 9), 'every serveFile settled')
  t.deepEqual(outcomes, Array(9).fill('resolved'))
  t.deepEqual(fdsOpenOn(file), [], 'every fd on the file is closed')
})

test('HTTP/2: the fd stays open while the stream sends; aborting mid-body resets the stream and rejects with AbortError; a client reset settles quietly', async (t) => {
  const dir = tempDir(t)
  const file = sparseFile(dir, 'huge.bin', 256 * MiB)
  const controller = new AbortController()
  const outcomes: Record<string, { error?: NodeJS.ErrnoException; headersSent: boolean }> = {}
  const server = http2.createServer((req, res) => {
    const name = req.url.slice(1)
    serveFile(req, res, file, name === 'abort' ? { signal: controller.signal } : {}).then(
      () => (outcomes[name] = { headersSent: res.headersSent }),
      (error: NodeJS.ErrnoException) => (outcomes[name] = { error, headersSent: res.headersSent }),
    )
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', () => resolve()))
  const client = http2.connect(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}`)
  client.on('error', () => {})
  t.teardown(() => {
    client.destroy()
    server.close()
  })
  /** A request whose body the client never reads: flow control stalls the stream after the first window. */
  const stalled = async (target: string) => {
    const stream = client.request({ ':path': target })
    stream.on('error', () => {})
    const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()))
    const headers = await within(new Promise<http2.IncomingHttpHeaders>((resolve) => stream.once('response', resolve)), 10_000, `the headers of ${target}`)
    return { stream, headers, closed: () => within(closed, 10_000, `${target} closing`) }
  }

  const aborted = await stalled('/abort')
  t.is(Number(aborted.headers[':status']), 200)
  t.is(fdsOpenOn(file).length, 1, 'the fd is open while the stream still has the file to send')
  controller.abort()
  await aborted.closed()
  t.is(aborted.stream.rstCode, http2.constants.NGHTTP2_CANCEL)
  t.true(await eventually(() => outcomes.abort !== undefined), 'serveFile settled')
  t.is(outcomes.abort.error?.name, 'AbortError')
  t.true(outcomes.abort.headersSent)

  const leaving = await stalled('/leave')
  leaving.stream.close(http2.constants.NGHTTP2_CANCEL)
  await leaving.closed()
  t.true(await eventually(() => outcomes.leave !== undefined), 'serveFile settled')
  t.deepEqual(outcomes.leave, { headersSent: true }, 'resolved: nothing is left to answer')
  t.true(await eventually(() => fdsOpenOn(file).length === 0), 'every fd on the file is closed')
  t.deepEqual(unexpected, [])
})

// ---------------------------------------------------------------------------------------------
// The static handler's root, file types, dotfiles and pipelining, each test with its own root.

/** Every process warning emitted while the test runs. */
function captureWarnings(t: ExecutionContext): Array<Error & { code?: string }> {
  const warnings: Array<Error & { code?: string }> = []
  const onWarning = (warning: Error) => warnings.push(warning)
  process.on('warning', onWarning)
  t.teardown(() => {
    process.off('warning', onWarning)
  })
  return warnings
}

test('a root that is a symlink is re-resolved: after an atomic redeploy the new release is served, also once the old one is deleted', async (t) => {
  const dir = tempDir(t)
  for (const release of ['rel1', 'rel2']) {
    fs.mkdirSync(path.join(dir, release))
    fs.writeFileSync(path.join(dir, release, 'version.txt'), `${release}\n`)
  }
  const current = path.join(dir, 'current')
  fs.symlinkSync('rel1', current)
  const port = await serve(t, createStaticHandler(current))
  t.is((await get(port, '/version.txt')).body.toString(), 'rel1\n')
  // The atomic redeploy: a new symlink renamed over the old one.
  fs.symlinkSync('rel2', path.join(dir, 'current.next'))
  fs.renameSync(path.join(dir, 'current.next'), current)
  let served = ''
  for (let attempt = 0; attempt < 100 && served !== 'rel2\n'; attempt++) {
    served = (await get(port, '/version.txt')).body.toString()
    if (served !== 'rel2\n') await tick(50)
  }
  t.is(served, 'rel2\n', 'the new release is served within a few seconds')
  fs.rmSync(path.join(dir, 'rel1'), { recursive: true })
  const afterDelete = await get(port, '/version.txt')
  t.is(afterDelete.status, 200)
  t.is(afterDelete.body.toString(), 'rel2\n')
})

test('not a regular file: a Unix socket and a FIFO under root are 404, promptly, for the static handler and serveFile', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, 'file.txt'), 'a file\n')
  const unixServer = net.createServer()
  await new Promise<void>((resolve, reject) => unixServer.once('error', reject).listen(path.join(dir, 'listening.sock'), () => resolve()))
  t.teardown(() => {
    unixServer.close()
  })
  execFileSync('mkfifo', [path.join(dir, 'fifo')])
  const statics = createStaticHandler(dir)
  const outcomes: unknown[] = []
  const port = await serve(t, (req, res) => {
    const url = req.url ?? '/'
    if (!url.startsWith('/serve/')) return statics(req, res)
    serveFile(req, res, path.join(dir, url.slice('/serve/'.length))).then(
      () => outcomes.push('resolved'),
      (error: NodeJS.ErrnoException) => {
        outcomes.push(error.code)
        if (!res.headersSent) res.writeHead(500).end()
      },
    )
  })
  for (const name of ['listening.sock', 'fifo']) {
    const statically = await get(port, `/${name}`)
    t.is(statically.status, 404, `static handler, ${name}`)
    t.is((await get(port, `/serve/${name}`)).status, 404, `serveFile, ${name}`)
  }
  t.is((await get(port, '/file.txt')).status, 200)
  t.deepEqual(outcomes, ['resolved', 'resolved'])
  t.deepEqual(fdsOpenOn(path.join(dir, 'fifo')), [])
})

test('25 pipelined requests on one connection: answered in order with exact bytes, without a MaxListenersExceededWarning', async (t) => {
  const warnings = captureWarnings(t)
  const dir = tempDir(t)
  const bodies = Array.from({ length: 25 }, (_, index) => pattern(1000 + index * 37, 100 + index))
  for (const [index, body] of bodies.entries()) fs.writeFileSync(path.join(dir, `${index}.bin`), body)
  const port = await serve(t, createStaticHandler(dir))
  const connection = raw(t, port)
  connection.send(bodies.map((_, index) => request(`/${index}.bin`)).join(''))
  for (const [index, body] of bodies.entries()) {
    const reply = await connection.next()
    t.is(reply.status, 200, `response ${index}`)
    t.true(reply.body.equals(body), `response ${index}`)
  }
  t.is(connection.leftover, 0)
  await tick() // process warnings are emitted on a later tick
  t.deepEqual(warnings.filter((warning) => warning.name === 'MaxListenersExceededWarning').map(String), [])
})

test('dotfiles are judged on the real path too: a symlink to a dotfile or into a dot-directory is ignored, denied or allowed like the dotfile', async (t) => {
  const dir = tempDir(t)
  fs.writeFileSync(path.join(dir, '.env'), `${SECRET} env\n`)
  fs.mkdirSync(path.join(dir, '.git'))
  fs.writeFileSync(path.join(dir, '.git', 'config'), `${SECRET} git\n`)
  fs.symlinkSync('.env', path.join(dir, 'env'))
  fs.symlinkSync('.git/config', path.join(dir, 'gitconfig'))
  fs.symlinkSync('.git', path.join(dir, 'git'))
  fs.mkdirSync(path.join(dir, 'docs'))
  fs.symlinkSync('../.env', path.join(dir, 'docs', 'index.html'))
  fs.writeFileSync(path.join(dir, 'plain.txt'), 'plain\n')
  const ignore = await serve(t, createStaticHandler(dir))
  const deny = await serve(t, createStaticHandler(dir, { dotfiles: 'deny' }))
  const allow = await serve(t, createStaticHandler(dir, { dotfiles: 'allow' }))
  for (const target of ['/env', '/gitconfig', '/git/config', '/docs/']) {
    const ignored = await get(ignore, target)
    t.is(ignored.status, 404, `ignore ${target}`)
    t.false(ignored.body.includes(SECRET), `ignore ${target}`)
    const denied = await get(deny, target)
    t.is(denied.status, 403, `deny ${target}`)
    t.false(denied.body.includes(SECRET), `deny ${target}`)
    const allowed = await get(allow, target)
    t.is(allowed.status, 200, `allow ${target}`)
    t.true(allowed.body.includes(SECRET), `allow ${target}`)
  }
  t.is((await get(ignore, '/plain.txt')).status, 200)
})

test('a missing root answers like a missing file (404, or next() as Express middleware), warns once per handler, and serves once it appears', async (t) => {
  const warnings = captureWarnings(t)
  const dir = tempDir(t)
  const missingRoot = path.join(dir, 'not-yet')
  const plain = await serve(t, createStaticHandler(missingRoot))
  const errors: unknown[] = []
  const app = express()
  app.use(createStaticHandler(missingRoot))
  app.use((req: express.Request, res: express.Response) => {
    res.status(404).type('text').send(`express answered ${req.url}`)
  })
  app.use((error: unknown, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
    errors.push(error)
    res.status(500).send('express error handler')
  })
  const middleware = await listen(t, http.createServer(app))
  for (let attempt = 0; attempt < 3; attempt++) {
    const reply = await get(plain, '/file.txt')
    t.is(reply.status, 404)
    t.is(reply.body.toString(), '404 Not Found\n')
    t.is((await get(middleware, '/file.txt')).body.toString(), 'express answered /file.txt')
  }
  t.deepEqual(errors, [])
  await tick() // process warnings are emitted on a later tick
  const missing = warnings.filter((warning) => warning.code === 'ZEROCOPY_STATIC_ROOT_MISSING')
  t.is(missing.length, 2, 'one warning per handler, not one per request')
  t.true(missing.every((warning) => warning.name === 'ZeroCopyWarning' && warning.message.includes(missingRoot)))

  fs.mkdirSync(missingRoot)
  fs.writeFileSync(path.join(missingRoot, 'file.txt'), 'arrived\n')
  let served = { plain: '', middleware: '' }
  for (let attempt = 0; attempt < 100 && (served.plain !== 'arrived\n' || served.middleware !== 'arrived\n'); attempt++) {
    served = { plain: (await get(plain, '/file.txt')).body.toString(), middleware: (await get(middleware, '/file.txt')).body.toString() }
    if (served.plain !== 'arrived\n' || served.middleware !== 'arrived\n') await tick(50)
  }
  t.deepEqual(served, { plain: 'arrived\n', middleware: 'arrived\n' }, 'the root is served once it exists')
})

test.after('no uncaught exception or unhandled rejection in the whole file', (t) => {
  t.deepEqual(unexpected, [])
})
