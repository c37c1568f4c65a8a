/**
 * Fuzzed requests and options against serveFile and createStaticHandler on a real server with
 * a raw TCP client (fetch would normalize the targets): only documented statuses and errors,
 * never an uncaught throw, an unhandled rejection, a hang, a byte from outside the root, a
 * connection or a file descriptor left open. Every wait is bounded.
 */
import test, { type ExecutionContext } from 'ava'
import fc from 'fast-check'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'

import { createStaticHandler, serveFile, type StaticHandler } from '..'
import { pattern, tempDir } from './helpers'
import { listen as listenOn } from './http-fixtures'
import { eventually, fdsOpenOn, within } from './socket-fixtures'

const unexpected: unknown[] = []
process.on('uncaughtException', (error) => unexpected.push(error))
process.on('unhandledRejection', (error) => unexpected.push(error))

/** Codes serveFile and createStaticHandler document for bad arguments and aborts (Node's own for bad header names and values). */
const DOCUMENTED_CODES = new Set([
  'ERR_INVALID_ARG_TYPE',
  'ERR_INVALID_ARG_VALUE',
  'ERR_OUT_OF_RANGE',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_INVALID_CHAR',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'ABORT_ERR',
])

function isDocumented(error: unknown): boolean {
  return error instanceof Error && DOCUMENTED_CODES.has((error as NodeJS.ErrnoException).code ?? '')
}

/** 400 and 431 are also Node's own answers to requests it cannot parse; the handler never sees those. */
const STATIC_STATUSES = new Set([200, 206, 301, 304, 400, 403, 404, 405, 412, 416, 431])
const SERVE_FILE_STATUSES = new Set([200, 206, 304, 400, 403, 404, 412, 416, 431])

// ---------------------------------------------------------------------------------------------
// Fixtures: a root with every kind of entry, and a secret next to it.

interface Fixture {
  root: string
  files: string[]
  /** Inside root, under a dotfile: served only with `dotfiles: 'allow'`. */
  dotSecret: string
  /** Outside root: never served. */
  outsideSecret: string
}

async function fixture(t: ExecutionContext): Promise<Fixture> {
  const dir = tempDir(t)
  const root = path.join(dir, 'public')
  const stamp = `${process.pid}-${Date.now()}`
  const dotSecret = `DOT-SECRET-${stamp}`
  const outsideSecret = `OUTSIDE-SECRET-${stamp}`
  const entries: Record<string, Buffer> = {
    'index.html': Buffer.from('<p>index</p>\n'),
    'notes.txt': Buffer.from('notes\n'),
    'mid.bin': pattern(100_000, 21),
    'empty.txt': Buffer.alloc(0),
    'uni-é.txt': Buffer.from('unicode name\n'),
    'sub/index.html': Buffer.from('<p>sub</p>\n'),
    'sub/page.txt': Buffer.from('sub page\n'),
    '.env': Buffer.from(`${dotSecret}\n`),
    '.git/config': Buffer.from(`${dotSecret}\n`),
  }
  for (const [name, data] of Object.entries(entries)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true })
    fs.writeFileSync(path.join(root, name), data)
  }
  fs.writeFileSync(path.join(dir, 'secret'), outsideSecret)
  fs.symlinkSync(path.join(dir, 'secret'), path.join(root, 'link-out'))
  fs.symlinkSync(dir, path.join(root, 'dir-out'))
  fs.symlinkSync('.env', path.join(root, 'env'))
  execFileSync('mkfifo', [path.join(root, 'fifo')])
  const unixServer = net.createServer()
  await new Promise<void>((resolve, reject) => unixServer.once('error', reject).listen(path.join(root, 'sock'), () => resolve()))
  t.teardown(() => {
    unixServer.close()
  })
  return { root, files: Object.keys(entries).map((name) => path.join(root, name)), dotSecret, outsideSecret }
}

/** A server on 127.0.0.1 whose every connection is counted, so the test can prove all of them closed. */
async function listen(t: ExecutionContext, handler: http.RequestListener): Promise<{ port: number; open: () => number }> {
  const server = http.createServer(handler)
  let open = 0
  server.on('connection', (socket) => {
    open++
    socket.once('close', () => open--)
  })
  return { port: await listenOn(t, server), open: () => open }
}

// ---------------------------------------------------------------------------------------------
// Requests: raw bytes on a fresh connection, `Connection: close`, read until the server closes.

interface FuzzRequest {
  method: string
  target: string
  headers: Array<[string, string]>
}

/** CR and LF would start a second request on the connection: the fuzz is about one request. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]/g, '')
}

function requestBytes({ method, target, headers }: FuzzRequest): Buffer {
  const lines = [
    `${method} ${oneLine(target)} HTTP/1.1`,
    'Host: localhost',
    'Connection: close',
    ...headers.map(([name, value]) => `${name}: ${oneLine(value)}`),
  ]
  return Buffer.from(`${lines.join('\r\n')}\r\n\r\n`)
}

/** The status of the one response, and every byte the server sent. */
async function exchange(port: number, request: FuzzRequest): Promise<{ status: number; received: Buffer }> {
  const socket = net.connect(port, '127.0.0.1')
  socket.on('error', () => {})
  try {
    const received = await within(
      new Promise<Buffer>((resolve) => {
        const chunks: Buffer[] = []
        socket.on('data', (chunk: Buffer) => chunks.push(chunk))
        socket.once('close', () => resolve(Buffer.concat(chunks)))
        socket.write(requestBytes(request))
      }),
      10_000,
      `${request.method} ${JSON.stringify(request.target)}`,
    )
    const status = /^HTTP\/1\.[01] (\d{3}) /.exec(received.toString('latin1'))
    return { status: status === null ? 0 : Number(status[1]), received }
  } finally {
    socket.destroy()
  }
}

/** encodeURIComponent, or the string as it is when it holds a lone surrogate (which encodeURIComponent refuses). */
function encoded(text: string): string {
  try {
    return encodeURIComponent(text)
  } catch {
    return text
  }
}

const segment = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.constantFrom(
      '',
      '.',
      '..',
      '%2e%2e',
      '%2E%2e',
      '.%2e',
      '%2e',
      '%00',
      'a%00b',
      '\\..',
      '..\\..',
      '%5c..',
      '%2f..',
      '%2F',
      '%252e%252e',
      '.env',
      '%2eenv',
      '.git',
      'config',
      'env',
    ),
  },
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      'index.html',
      'notes.txt',
      'mid.bin',
      'empty.txt',
      'sub',
      'page.txt',
      'fifo',
      'sock',
      'link-out',
      'dir-out',
      'secret',
      'uni-%C3%A9.txt',
      'uni-é.txt',
      '%',
      '%zz',
      '%C0%AF',
      '%E0%A4%A',
    ),
  },
  // Raw code points, controls and spaces included: most of these are Node's own 400.
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 12 }).map(encoded) },
  { weight: 1, arbitrary: fc.constantFrom('x'.repeat(300), 'é'.repeat(200), `${'%2e%2e/'.repeat(40)}secret`) },
)

const target = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.constantFrom(
      '/',
      '/index.html',
      '/notes.txt',
      '/mid.bin',
      '/mid.bin',
      '/empty.txt',
      '/sub/',
      '/sub',
      '/sub/page.txt',
      '/uni-%C3%A9.txt',
      '/env',
      '/.env',
      '/fifo',
      '/sock',
      '/link-out',
    ),
  },
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.array(segment, { minLength: 1, maxLength: 4 }), fc.constantFrom('', '', '', '/', '?q=1', '?a=%00', '#frag', '?x=..%2f'))
      .map(([segments, tail]) => `/${segments.join('/')}${tail}`),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom('*', 'http://localhost/notes.txt', 'http://localhost/../secret', '//sub', '/\\..\\secret', `/${'a'.repeat(9000)}`, '/sub?x=1'),
  },
)

const headerValue = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom(
      'bytes=0-0',
      'bytes=-1',
      'bytes=0-',
      'bytes=10-5',
      'bytes=0-1,5-6',
      'bytes=99999999999999999999-',
      'bytes=-0',
      'bytes=100000-',
      'bytes=5-99999',
      '*',
      'W/"x"',
      '"x"',
      'Tue, 02 Jan 2024 03:04:05 GMT',
      'Wed, 01 Jan 2celebrate',
      'gzip, br',
      'identity;q=0',
    ),
  },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  // Controls included: Node's own 400.
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
)

const request = fc
  .record({
    method: fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom('GET', 'HEAD') },
      { weight: 1, arbitrary: fc.constantFrom('POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND', 'get', 'BREW') },
    ),
    target,
    // A Range of its own, in about half the requests: mixed into the others it would rarely come up.
    range: fc.option(
      fc.oneof(fc.constantFrom('bytes=0-0', 'bytes=-1', 'bytes=0-', 'bytes=5-99999', 'bytes=100-200', 'bytes=-5000', 'bytes=99999-'), headerValue),
      { nil: undefined },
    ),
    headers: fc.array(
      fc.tuple(
        fc.constantFrom('Range', 'If-Match', 'If-None-Match', 'If-Modified-Since', 'If-Unmodified-Since', 'If-Range', 'Accept-Encoding', 'X-Fuzz'),
        headerValue,
      ),
      { maxLength: 3 },
    ),
  })
  .map(({ method, target, range, headers }): FuzzRequest => ({ method, target, headers: range === undefined ? headers : [['Range', range], ...headers] }))

/** An option's value: mostly valid, so most runs get to serve; sometimes invalid, sometimes anything at all. */
function option<T, U>(valid: fc.Arbitrary<T>, invalid: fc.Arbitrary<U>): fc.Arbitrary<T | U | unknown> {
  return fc.oneof({ weight: 60, arbitrary: valid }, { weight: 1, arbitrary: invalid }, { weight: 1, arbitrary: fc.anything() })
}

const aBoolean = option(fc.boolean(), fc.constantFrom(0, 1, 'true', null))

const fileOptions = {
  maxAge: option(fc.oneof(fc.nat(), fc.double({ min: 0, noNaN: true, max: 1e12 })), fc.constantFrom(-1, Number.NaN, Infinity, '60')),
  immutable: aBoolean,
  cacheControl: aBoolean,
  lastModified: aBoolean,
  etag: aBoolean,
  acceptRanges: aBoolean,
  contentType: option(
    fc.oneof(fc.constantFrom('text/plain', 'video/mp4', 'é'), fc.stringMatching(/^[a-z]{1,8}\/[a-z0-9.+-]{1,12}$/)),
    fc.constantFrom('bad\nvalue', 'nul\0', 1),
  ),
  headers: option(
    fc.dictionary(
      fc.constantFrom('X-Extra', 'Cache-Control', 'Content-Type', 'Vary', 'Content-Disposition'),
      fc.oneof(fc.stringMatching(/^[ -~]{0,20}$/), fc.integer(), fc.array(fc.stringMatching(/^[a-z]{0,5}$/), { maxLength: 2 })),
      { maxKeys: 2 },
    ),
    fc.oneof(
      fc.dictionary(fc.string({ maxLength: 10 }), fc.oneof(fc.string({ unit: 'binary', maxLength: 10 }), fc.anything()), { minKeys: 1, maxKeys: 2 }),
      fc.constantFrom({ 'Bad Name': 'x' }, { '': 'x' }, { 'X-Ok': 'a\r\nb' }, { 'X-Ok': undefined }, { 'X-Ok': [1] }),
    ),
  ),
  signal: option(fc.constant(new AbortController().signal), fc.constantFrom(AbortSignal.abort(), AbortSignal.abort(), { aborted: true })),
}

function optionsOf<T>(record: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> {
  return fc.oneof({ weight: 1, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.anything() }, { weight: 12, arbitrary: record })
}

const serveFileOptions = optionsOf(fc.record(fileOptions, { requiredKeys: [] }))
const staticOptions = optionsOf(
  fc.record(
    {
      ...fileOptions,
      index: option(
        fc.constantFrom('index.html', false, 'page.txt', 'missing.html', '.env', 'é.html'),
        fc.constantFrom('../x', 'a/b', 'a\\b', '', '.', '..', 'a\0b', 1),
      ),
      dotfiles: option(fc.constantFrom('ignore', 'allow', 'deny'), fc.constantFrom('Allow', '', true)),
      fallthrough: aBoolean,
    },
    { requiredKeys: [] },
  ),
)

/**
 * Modest, so both properties finish in seconds on 2 busy cores; shrinking a failure is cut off
 * after a minute (each failing run may wait out a 10 s bound), which still reports the failure.
 */
const FUZZ_RUNS: fc.Parameters<unknown> = { numRuns: 150, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true }

function abortedSignalIn(options: unknown): boolean {
  const signal = typeof options === 'object' && options !== null ? (options as { signal?: unknown }).signal : undefined
  return signal instanceof AbortSignal && signal.aborted
}

// ---------------------------------------------------------------------------------------------

test('fuzzed requests and options to createStaticHandler: documented statuses and errors only, nothing from outside root, every connection closed', async (t) => {
  const { root, files, dotSecret, outsideSecret } = await fixture(t)
  let current: { handler: StaticHandler; asMiddleware: boolean } | undefined
  let handlers = 0
  const statuses: Record<number, number> = {}
  const nextErrors: unknown[] = []
  const server = await listen(t, (req, res) => {
    if (current === undefined) return void res.writeHead(503).end()
    if (!current.asMiddleware) return current.handler(req, res)
    current.handler(req, res, (error?: unknown) => {
      if (error !== undefined) nextErrors.push(error)
      res.writeHead(error === undefined ? 404 : 500, { 'Content-Type': 'text/plain' }).end('from next\n')
    })
  })

  await fc.assert(
    fc.asyncProperty(staticOptions, fc.boolean(), fc.array(request, { minLength: 1, maxLength: 3 }), async (options, asMiddleware, requests) => {
      let handler: StaticHandler
      try {
        handler = createStaticHandler(root, options as Parameters<typeof createStaticHandler>[1])
      } catch (error) {
        if (!isDocumented(error)) t.fail(`createStaticHandler threw ${String(error)} (${(error as NodeJS.ErrnoException).code})`)
        return
      }
      current = { handler, asMiddleware }
      handlers++
      nextErrors.length = 0
      const aborted = abortedSignalIn(options)
      const allowsDotfiles = (options as { dotfiles?: unknown } | undefined)?.dotfiles === 'allow'
      try {
        for (const fuzzed of requests) {
          const { status, received } = await exchange(server.port, fuzzed)
          statuses[status] = (statuses[status] ?? 0) + 1
          const what = `${fuzzed.method} ${JSON.stringify(fuzzed.target)} → ${status}`
          if (!(STATIC_STATUSES.has(status) || (aborted && status === 500))) t.fail(`undocumented status: ${what}`)
          if (received.includes(outsideSecret)) t.fail(`a byte from outside root: ${what}`)
          if (!allowsDotfiles && received.includes(dotSecret)) t.fail(`a dotfile served: ${what}`)
        }
      } finally {
        // The handler keeps files open (its open-file cache) until it is closed.
        handler.close()
      }
      for (const error of nextErrors) if (!(aborted && (error as Error).name === 'AbortError')) t.fail(`next(${String(error)})`)
    }),
    FUZZ_RUNS,
  )
  current = undefined
  t.log(`${handlers} handlers created; statuses: ${JSON.stringify(statuses)}`)
  t.true(await eventually(() => server.open() === 0), 'every connection closed')
  t.deepEqual(
    files.flatMap((file) => fdsOpenOn(file)),
    [],
    'every file closed',
  )
  t.deepEqual(unexpected, [])
})

test('fuzzed paths, requests and options to serveFile: documented statuses and rejections only, every promise settled, every connection closed', async (t) => {
  const { root, files } = await fixture(t)
  const fixed = [
    ...files,
    root,
    path.join(root, 'fifo'),
    path.join(root, 'sock'),
    path.join(root, 'missing'),
    path.join(root, 'notes.txt', 'child'),
    path.join(root, 'notes\0.txt'),
    path.join(root, 'link-out'),
  ]
  const filePath = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...fixed) },
    // Random names, kept inside root: serveFile trusts its path, so '..' would only fuzz the disk.
    {
      weight: 3,
      arbitrary: fc
        .string({ unit: 'binary', maxLength: 20 })
        .filter((name) => !name.split(/[\\/]/).includes('..'))
        .map((name) => path.join(root, name)),
    },
    { weight: 1, arbitrary: fc.anything().filter((value) => typeof value !== 'string') },
  )
  let current: { file: unknown; options: unknown } | undefined
  const rejections: unknown[] = []
  const statuses: Record<number, number> = {}
  let pending = 0
  const server = await listen(t, (req, res) => {
    if (current === undefined) return void res.writeHead(503).end()
    pending++
    ;(serveFile as (...args: unknown[]) => Promise<void>)(req, res, current.file, current.options)
      .catch((error: unknown) => {
        rejections.push(error)
        if (res.headersSent) res.destroy()
        else res.writeHead(500, { 'Content-Type': 'text/plain' }).end('rejected\n')
      })
      .finally(() => pending--)
  })

  await fc.assert(
    fc.asyncProperty(filePath, serveFileOptions, request, async (file, options, fuzzed) => {
      current = { file, options }
      rejections.length = 0
      const { status } = await exchange(server.port, fuzzed)
      statuses[status] = (statuses[status] ?? 0) + 1
      const what = `${fuzzed.method} ${JSON.stringify(fuzzed.target)} of ${JSON.stringify(file)} → ${status}`
      for (const error of rejections)
        if (!isDocumented(error)) t.fail(`serveFile rejected with ${String(error)} (${(error as NodeJS.ErrnoException).code}): ${what}`)
      if (!(SERVE_FILE_STATUSES.has(status) || (status === 500 && rejections.length > 0))) t.fail(`undocumented status: ${what}`)
    }),
    FUZZ_RUNS,
  )
  current = undefined
  t.log(`statuses: ${JSON.stringify(statuses)}`)
  t.true(await eventually(() => pending === 0), 'every serveFile promise settled')
  t.true(await eventually(() => server.open() === 0), 'every connection closed')
  t.deepEqual(
    files.flatMap((file) => fdsOpenOn(file)),
    [],
    'every file closed',
  )
  t.deepEqual(unexpected, [])
})
