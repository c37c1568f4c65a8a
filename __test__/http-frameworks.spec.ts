/**
 * serveFile and createStaticHandler inside the frameworks people use, with the real packages:
 * Express 5 (the static handler as middleware, serveFile as `res.sendFile`), Fastify 5 (the
 * `@zerocopy/sendfile/fastify` plugin: prefix, `reply.sendFile`, hooks, not-found and error
 * handlers), Koa 3 (`ctx.respond = false` and serveFile) and node:http2's compatibility API
 * (ranges, multipart and conditionals through `respondWithFD` or `res.write`). Real clients on
 * 127.0.0.1; statuses, headers and exact bytes; every wait bounded, every server closed.
 */
import test, { type ExecutionContext } from 'ava'
import express from 'express'
import Fastify, { type FastifyInstance } from 'fastify'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as http2 from 'node:http2'
import type * as net from 'node:net'
import * as path from 'node:path'

import sendfile from '@zerocopy/sendfile/fastify'
import { createStaticHandler, serveFile } from '..'
import { pattern, sha256, tempDir } from './helpers'
import { listen, request } from './http-fixtures'
import { MiB, captureReports, within } from './socket-fixtures'

function fixture(t: ExecutionContext) {
  const root = tempDir(t)
  const files = {
    'index.html': Buffer.from('<!doctype html><title>home</title>\n'),
    'app.js': Buffer.from('console.log("app")\n'),
    'video.mp4': pattern(2 * MiB + 3, 7),
    'docs/index.html': Buffer.from('<p>docs</p>\n'),
  }
  for (const [name, data] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(root, name)), { recursive: true })
    fs.writeFileSync(path.join(root, name), data)
  }
  fs.writeFileSync(path.join(path.dirname(root), `${path.basename(root)}-secret`), 'secret\n')
  t.teardown(() => fs.rmSync(path.join(path.dirname(root), `${path.basename(root)}-secret`), { force: true }))
  return { root, files }
}

// ---------------------------------------------------------------------------------------------
// Express 5.

test('Express 5: createStaticHandler as middleware under a mount point, misses to the next handler; serveFile in a route', async (t) => {
  const { root, files } = fixture(t)
  const app = express()
  app.use('/static', createStaticHandler(root, { maxAge: 60 }))
  app.get('/download/:name', (req, res, next) => {
    serveFile(req, res, path.join(root, path.basename(req.params.name)), { download: true }).catch(next)
  })
  app.use((_req, res) => {
    res.status(404).type('text/plain').send('express 404\n')
  })
  const port = await listen(t, http.createServer(app))
  const reports = captureReports(t)
  const video = await request(port, '/static/video.mp4')
  t.is(video.status, 200)
  t.is(video.headers['cache-control'], 'public, max-age=60')
  t.is(sha256(video.body), sha256(files['video.mp4']))
  t.true(reports.some((report) => report.operation === 'sendFile' && report.method === 'sendfile' && report.bytes === files['video.mp4'].length))
  const ranged = await request(port, '/static/video.mp4', { Range: 'bytes=0-9,-10' })
  t.is(ranged.status, 206)
  t.regex(ranged.headers['content-type'] ?? '', /^multipart\/byteranges; boundary=/)
  const redirect = await request(port, '/static/docs')
  t.is(redirect.status, 301)
  t.is(redirect.headers.location, '/static/docs/')
  t.is((await request(port, '/static/docs/')).body.toString(), '<p>docs</p>\n')
  const missing = await request(port, '/static/nope.txt')
  t.is(missing.status, 404)
  t.is(missing.body.toString(), 'express 404\n')
  const download = await request(port, '/download/app.js')
  t.is(download.headers['content-disposition'], 'attachment; filename="app.js"')
  t.true(download.body.equals(files['app.js']))
  t.is((await request(port, '/download/none.js')).status, 404)
})

// ---------------------------------------------------------------------------------------------
// Fastify 5.

/** Fastify's log lines, parsed: a warning or an error (level 40 and up) means it tried to answer a reply it had handed over. */
type LogLine = { level: number; msg: string; res?: { statusCode?: number } }

async function fastifyApp(t: ExecutionContext, build: (app: FastifyInstance) => void, logs: LogLine[] = []): Promise<number> {
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) } } })
  build(app)
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  return (app.server.address() as net.AddressInfo).port
}

test('Fastify 5: the plugin serves root under prefix zero-copy through the raw response, its hooks and logging still running, no warning', async (t) => {
  const { root, files } = fixture(t)
  const seen: string[] = []
  const logs: LogLine[] = []
  const port = await fastifyApp(
    t,
    (app) => {
      app.addHook('onRequest', async (request) => {
        seen.push(`onRequest ${request.url}`)
      })
      app.addHook('onResponse', async (request, reply) => {
        seen.push(`onResponse ${request.url} ${reply.statusCode}`)
      })
      app.register(sendfile, { root, prefix: '/assets', maxAge: 600 })
    },
    logs,
  )
  const reports = captureReports(t)
  const video = await request(port, '/assets/video.mp4')
  t.is(video.status, 200)
  t.is(video.headers['content-type'], 'video/mp4')
  t.is(video.headers['cache-control'], 'public, max-age=600')
  t.is(video.headers['content-length'], String(files['video.mp4'].length))
  t.is(sha256(video.body), sha256(files['video.mp4']))
  t.true(reports.some((report) => report.operation === 'sendFile' && report.method === 'sendfile' && report.bytes === files['video.mp4'].length))
  const ranged = await request(port, '/assets/video.mp4?x=1', { Range: 'bytes=100-199' })
  t.is(ranged.status, 206)
  t.true(ranged.body.equals(files['video.mp4'].subarray(100, 200)))
  const head = await request(port, '/assets/app.js', {}, 'HEAD')
  t.is(head.status, 200)
  t.is(head.headers['content-length'], String(files['app.js'].length))
  t.is(head.body.length, 0)
  const appEtag = (await request(port, '/assets/app.js')).headers.etag ?? 'none'
  const notModified = await request(port, '/assets/app.js', { 'If-None-Match': appEtag })
  t.is(notModified.status, 304)
  const redirect = await request(port, '/assets/docs?q=1')
  t.is(redirect.status, 301)
  t.is(redirect.headers.location, '/assets/docs/?q=1')
  t.is((await request(port, '/assets/docs/')).body.toString(), '<p>docs</p>\n')
  await within(
    (async () => {
      while (!seen.includes('onResponse /assets/docs/ 200')) await new Promise((resolve) => setTimeout(resolve, 10))
    })(),
    5000,
    'the onResponse hook',
  )
  t.true(seen.includes('onRequest /assets/video.mp4'))
  t.true(seen.includes('onResponse /assets/video.mp4 200'))
  t.true(seen.includes('onResponse /assets/video.mp4?x=1 206'))
  t.deepEqual(
    logs.filter((line) => line.level >= 40),
    [],
    'Fastify never tried to answer a hijacked reply',
  )
  t.true(logs.some((line) => line.msg === 'request completed' && line.res?.statusCode === 206))
})

test("Fastify 5: a miss goes to Fastify's not-found handler, an escape is refused, other routes are untouched", async (t) => {
  const { root } = fixture(t)
  const port = await fastifyApp(t, (app) => {
    app.setNotFoundHandler((request, reply) => {
      reply.code(404).type('text/plain').send(`fastify not found: ${request.url}\n`)
    })
    app.register(sendfile, { root, prefix: '/assets/' })
    app.get('/api', async () => ({ ok: true }))
  })
  const missing = await request(port, '/assets/nope.js')
  t.is(missing.status, 404)
  t.is(missing.body.toString(), 'fastify not found: /assets/nope.js\n')
  const escaping = await request(port, `/assets/%2e%2e/${path.basename(root)}-secret`)
  t.is(escaping.status, 403)
  t.false(escaping.body.toString().includes('secret'))
  t.is((await request(port, '/assets/.hidden')).status, 404)
  const api = await request(port, '/api')
  t.deepEqual(JSON.parse(api.body.toString()), { ok: true })
  t.is((await request(port, '/other')).body.toString(), 'fastify not found: /other\n')
})

test('Fastify 5: reply.sendFile answers with a file under root, with options; errors go to the error handler; ESM and CJS entries', async (t) => {
  const { root, files } = fixture(t)
  const errors: string[] = []
  const port = await fastifyApp(t, (app) => {
    app.setErrorHandler((error: Error, _request, reply) => {
      errors.push(error.message)
      reply.code(500).send({ error: error.message })
    })
    app.setNotFoundHandler((_request, reply) => {
      reply.code(404).send('nf\n')
    })
    app.register(sendfile, { root, prefix: '/assets' })
    app.get('/', (_request, reply) => reply.sendFile('index.html'))
    app.get('/get-video', async (_request, reply) => reply.sendFile('video.mp4', { download: 'clip.mp4', maxAge: 30 }))
    app.get('/escape', (_request, reply) => reply.sendFile('../outside'))
    app.get('/bad-options', (_request, reply) => reply.sendFile('app.js', { maxAge: -1 }))
    app.get('/failing-hook', (_request, reply) =>
      reply.sendFile('app.js', {
        setHeaders() {
          throw new Error('no headers today')
        },
      }),
    )
  })
  const home = await request(port, '/')
  t.is(home.status, 200)
  t.is(home.headers['content-type'], 'text/html; charset=utf-8')
  t.true(home.body.equals(files['index.html']))
  const video = await request(port, '/get-video', { Range: 'bytes=-16' })
  t.is(video.status, 206)
  t.is(video.headers['content-disposition'], 'attachment; filename="clip.mp4"')
  t.is(video.headers['cache-control'], 'public, max-age=30')
  t.true(video.body.equals(files['video.mp4'].subarray(-16)))
  t.is((await request(port, '/escape')).body.toString(), 'nf\n')
  const bad = await request(port, '/bad-options')
  t.is(bad.status, 500)
  t.regex(bad.body.toString(), /maxAge/)
  const hook = await request(port, '/failing-hook')
  t.is(hook.status, 500)
  t.deepEqual(JSON.parse(hook.body.toString()), { error: 'no headers today' })
  t.true(errors.includes('no headers today'))

  const esm = (await import('../fastify.mjs' as string)) as { default: unknown; fastifySendfile: unknown }
  t.is(esm.default, sendfile)
  t.is(esm.fastifySendfile, sendfile)
  t.is((sendfile as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')], true)
})

test('Fastify 5: bad plugin options fail registration with Node-shaped errors', async (t) => {
  const cases: Array<{ options: Record<string, unknown>; code: string }> = [
    { options: {}, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { root: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { root: '.', prefix: 'assets' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { root: '.', maxAge: -1 }, code: 'ERR_OUT_OF_RANGE' },
    { options: { root: '.', decorateReply: 'yes' }, code: 'ERR_INVALID_ARG_TYPE' },
  ]
  for (const { options, code } of cases) {
    const app = Fastify()
    app.register(sendfile, options as never)
    const error = await app.ready().then(
      () => undefined,
      (failure: NodeJS.ErrnoException) => failure,
    )
    await app.close()
    t.is(error?.code, code, JSON.stringify(options))
  }
})

// ---------------------------------------------------------------------------------------------
// Koa 3.

// @types/koa 3 does not compile against the content-disposition that koa 3 installs (it names an
// `Options` type that package no longer exports), so Koa is loaded untyped, with what is used here typed.
interface KoaContext {
  method: string
  path: string
  req: http.IncomingMessage
  res: http.ServerResponse
  respond?: boolean
  body: unknown
}
type KoaMiddleware = (ctx: KoaContext, next: () => Promise<void>) => unknown
const Koa = require('koa') as new () => { use(middleware: KoaMiddleware): unknown; callback(): http.RequestListener }

test('Koa 3: ctx.respond = false and serveFile answer with the file zero-copy; other requests go down the stack', async (t) => {
  const { root, files } = fixture(t)
  const app = new Koa()
  app.use(async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next()
    if (!ctx.path.startsWith('/files/')) return next()
    // Koa must not answer: serveFile writes the response itself.
    ctx.respond = false
    await serveFile(ctx.req, ctx.res, path.join(root, path.basename(ctx.path)), { maxAge: 5 })
  })
  app.use((ctx) => {
    ctx.body = 'koa body\n'
  })
  const port = await listen(t, http.createServer(app.callback()))
  const reports = captureReports(t)
  const video = await request(port, '/files/video.mp4')
  t.is(video.status, 200)
  t.is(video.headers['cache-control'], 'public, max-age=5')
  t.is(sha256(video.body), sha256(files['video.mp4']))
  t.true(reports.some((report) => report.operation === 'sendFile' && report.method === 'sendfile'))
  const parts = await request(port, '/files/app.js', { Range: 'bytes=0-6' })
  t.is(parts.status, 206)
  t.is(parts.body.toString(), 'console')
  t.is((await request(port, '/files/missing.js')).status, 404)
  t.is((await request(port, '/elsewhere')).body.toString(), 'koa body\n')
})

// ---------------------------------------------------------------------------------------------
// HTTP/2.

interface Http2Reply {
  status: number
  headers: http2.IncomingHttpHeaders
  body: Buffer
}

function http2Request(session: http2.ClientHttp2Session, target: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Http2Reply> {
  const done = new Promise<Http2Reply>((resolve, reject) => {
    const stream = session.request({ ':path': target, ':method': method, ...headers })
    let responseHeaders: http2.IncomingHttpHeaders = {}
    const chunks: Buffer[] = []
    stream.on('response', (received) => (responseHeaders = received))
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.once('end', () => resolve({ status: Number(responseHeaders[':status']), headers: responseHeaders, body: Buffer.concat(chunks) }))
    stream.once('error', reject)
    stream.end()
  })
  return within(done, 10_000, `h2 ${method} ${target}`)
}

test('HTTP/2: serveFile on a compatibility response answers ranges, several ranges, conditionals, HEAD and precompressed variants', async (t) => {
  const { root, files } = fixture(t)
  fs.writeFileSync(path.join(root, 'app.js.br'), 'pretend brotli')
  const server = http2.createServer((req, res) => {
    serveFile(req, res, path.join(root, path.basename(req.url)), { precompressed: ['br'] }).catch(() =>
      res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR),
    )
  })
  const port = await listen(t, server)
  const session = http2.connect(`http://127.0.0.1:${port}`)
  t.teardown(() => session.close())
  const data = files['video.mp4']
  const whole = await http2Request(session, '/video.mp4')
  t.is(whole.status, 200)
  t.is(whole.headers['content-length'], String(data.length))
  t.is(sha256(whole.body), sha256(data))
  const etag = String(whole.headers.etag)
  const ranged = await http2Request(session, '/video.mp4', { range: `bytes=${MiB}-${MiB + 999}`, 'if-range': etag })
  t.is(ranged.status, 206)
  t.is(ranged.headers['content-range'], `bytes ${MiB}-${MiB + 999}/${data.length}`)
  t.true(ranged.body.equals(data.subarray(MiB, MiB + 1000)))
  const several = await http2Request(session, '/video.mp4', { range: 'bytes=0-4,-5' })
  t.is(several.status, 206)
  t.is(several.headers['content-length'], String(several.body.length))
  const boundary = /boundary=([0-9a-f]+)$/.exec(String(several.headers['content-type']))?.[1]
  t.is(
    several.body.toString('latin1'),
    `--${boundary}\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-4/${data.length}\r\n\r\n${data.subarray(0, 5).toString('latin1')}` +
      `\r\n--${boundary}\r\nContent-Type: video/mp4\r\nContent-Range: bytes ${data.length - 5}-${data.length - 1}/${data.length}\r\n\r\n${data.subarray(-5).toString('latin1')}` +
      `\r\n--${boundary}--\r\n`,
  )
  t.is((await http2Request(session, '/video.mp4', { 'if-none-match': etag })).status, 304)
  t.is((await http2Request(session, '/video.mp4', { 'if-match': '"other"' })).status, 412)
  t.is((await http2Request(session, '/video.mp4', { range: `bytes=${data.length}-` })).status, 416)
  const head = await http2Request(session, '/video.mp4', {}, 'HEAD')
  t.is(head.headers['content-length'], String(data.length))
  t.is(head.body.length, 0)
  const br = await http2Request(session, '/app.js', { 'accept-encoding': 'gzip, br' })
  t.is(br.headers['content-encoding'], 'br')
  t.is(br.headers.vary, 'Accept-Encoding')
  t.is(br.headers['content-type'], 'text/javascript; charset=utf-8')
  t.is(br.body.toString(), 'pretend brotli')
})
