/**
 * serveFile's options that shape the answer, against a real node:http server on 127.0.0.1 and
 * real clients (node:http, which hands over the bytes as they came, compressed or not, and curl):
 * strong and weak ETags with If-Range and If-Match, setHeaders, download, precompressed variants
 * and multipart/byteranges, each checked by status, headers and exact bytes. Every wait is
 * bounded; nothing depends on timing.
 */
import test, { type ExecutionContext } from 'ava'
import compression from 'compression'
import express from 'express'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as https from 'node:https'
import * as net from 'node:net'
import * as path from 'node:path'
import { promisify } from 'node:util'
import * as zlib from 'node:zlib'

import { type ServeFileOptions, serveFile } from '..'
import { pattern, sha256, tempDir } from './helpers'
import { type Reply, listen, request } from './http-fixtures'
import { MiB, captureReports, eventually, fdsOpenOn, selfSignedCertificate, within } from './socket-fixtures'

const MTIME = new Date('2024-01-02T03:04:05.678Z')

/** The strong ETag the package sends: inode, size and mtime in µs, in hex. */
function strongEtagOf(file: string): string {
  const stats = fs.statSync(file)
  return `"${stats.ino.toString(16)}-${stats.size.toString(16)}-${Math.round(stats.mtimeMs * 1000).toString(16)}"`
}

function write(dir: string, name: string, data: Buffer | string): string {
  const file = path.join(dir, name)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, data)
  fs.utimesSync(file, MTIME, MTIME)
  return file
}

/** A node:http server answering every request with serveFile of `fileFor(url)`, closed when the test ends. */
async function serveWith(
  t: ExecutionContext,
  fileFor: (url: string) => string,
  options: ServeFileOptions | ((url: string) => ServeFileOptions) = {},
): Promise<{ port: number; server: http.Server }> {
  const server = http.createServer((req, res) => {
    const url = req.url ?? '/'
    serveFile(req, res, fileFor(url), typeof options === 'function' ? options(url) : options).catch((error: unknown) => {
      if (res.headersSent) res.destroy()
      else res.writeHead(500, { 'X-Error': String((error as Error).message).replace(/[^\x20-\x7e]/g, '?') }).end()
    })
  })
  return { port: await listen(t, server), server }
}

/** The parts of a multipart/byteranges body, parsed strictly: anything out of shape throws. */
function multipartParts(reply: Reply): Array<{ type: string; range: string; body: Buffer }> {
  const match = /^multipart\/byteranges; boundary=([0-9a-f]+)$/.exec(reply.headers['content-type'] ?? '')
  if (match === null) throw new Error(`not multipart: ${reply.headers['content-type']}`)
  const delimiter = Buffer.from(`--${match[1]}`)
  const parts: Array<{ type: string; range: string; body: Buffer }> = []
  let at = 0
  for (;;) {
    if (!reply.body.subarray(at, at + delimiter.length).equals(delimiter)) throw new Error(`no delimiter at ${at}`)
    at += delimiter.length
    const rest = reply.body.subarray(at)
    if (rest.equals(Buffer.from('--\r\n'))) return parts
    const headEnd = rest.indexOf('\r\n\r\n')
    const head = rest.subarray(0, headEnd).toString('latin1')
    const lines = head.split('\r\n')
    if (lines[0] !== '' || lines.length !== 3) throw new Error(`bad part head ${JSON.stringify(head)}`)
    const type = /^Content-Type: (.*)$/.exec(lines[1])?.[1] ?? ''
    const range = /^Content-Range: (.*)$/.exec(lines[2])?.[1] ?? ''
    const [, first, last] = /^bytes (\d+)-(\d+)\/\d+$/.exec(range) ?? []
    const length = Number(last) - Number(first) + 1
    const start = at + headEnd + 4
    parts.push({ type, range, body: reply.body.subarray(start, start + length) })
    at = start + length
    if (!reply.body.subarray(at, at + 2).equals(Buffer.from('\r\n'))) throw new Error(`no CRLF after part at ${at}`)
    at += 2
  }
}

// ---------------------------------------------------------------------------------------------
// ETag.

test('etag: a strong tag by default, so If-Range with it gets 206 and If-Match holds; its weak form does neither', async (t) => {
  const dir = tempDir(t)
  const data = pattern(10_000, 1)
  const file = write(dir, 'video.bin', data)
  const etag = strongEtagOf(file)
  const { port } = await serveWith(t, () => file)
  const whole = await request(port, '/')
  t.is(whole.headers.etag, etag)
  const seek = await request(port, '/', { Range: 'bytes=100-199', 'If-Range': etag })
  t.is(seek.status, 206, "a browser's seek: If-Range with the tag it got")
  t.true(seek.body.equals(data.subarray(100, 200)))
  const weakForm = await request(port, '/', { Range: 'bytes=100-199', 'If-Range': `W/${etag}` })
  t.is(weakForm.status, 200, 'a weak tag never holds in If-Range')
  t.true(weakForm.body.equals(data))
  t.is((await request(port, '/', { 'If-Match': etag })).status, 200)
  t.is((await request(port, '/', { 'If-Match': `W/${etag}` })).status, 412)
  t.is((await request(port, '/', { 'If-None-Match': `W/${etag}` })).status, 304, 'If-None-Match compares weakly')
})

test('etag: the strong tag changes when the file is replaced by one of the same size and mtime', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'a.txt', 'first\n')
  const { port } = await serveWith(t, () => file)
  const before = (await request(port, '/')).headers.etag
  const replacement = write(dir, 'b.txt', 'other\n')
  fs.renameSync(replacement, file)
  const after = await request(port, '/', { 'If-None-Match': before ?? '' })
  t.is(after.status, 200, 'a new inode is a new version')
  t.is(after.body.toString(), 'other\n')
  t.not(after.headers.etag, before)
  t.is(after.headers.etag, strongEtagOf(file))
})

test('etag: \'weak\' sends W/"size-mtime": If-None-Match gets 304, If-Range the whole file; false sends none; true is strong', async (t) => {
  const dir = tempDir(t)
  const data = pattern(5000, 2)
  const file = write(dir, 'data.bin', data)
  const stats = fs.statSync(file)
  const weak = `W/"${stats.size.toString(16)}-${Math.floor(stats.mtimeMs).toString(16)}"`
  const { port } = await serveWith(
    t,
    () => file,
    (url) => ({ etag: ({ '/weak': 'weak', '/none': false, '/true': true } as const)[url] }),
  )
  t.is((await request(port, '/weak')).headers.etag, weak)
  t.is((await request(port, '/weak', { 'If-None-Match': weak })).status, 304)
  const ranged = await request(port, '/weak', { Range: 'bytes=0-9', 'If-Range': weak })
  t.is(ranged.status, 200)
  t.true(ranged.body.equals(data))
  t.is((await request(port, '/weak', { 'If-Match': weak })).status, 412, 'If-Match compares strongly')
  t.is((await request(port, '/none')).headers.etag, undefined)
  t.is((await request(port, '/true')).headers.etag, strongEtagOf(file))
})

// ---------------------------------------------------------------------------------------------
// setHeaders.

test('setHeaders: called with the response, path and stats before the headers of 200, 206 and HEAD, not 304; what it sets wins', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'page.html', '<p>hello</p>\n')
  const calls: Array<{ path: string; size: number; headersSent: boolean }> = []
  const { port } = await serveWith(t, () => file, {
    maxAge: 60,
    setHeaders(res, filePath, stats) {
      calls.push({ path: filePath, size: stats.size, headersSent: res.headersSent })
      res.setHeader('Cache-Control', 'no-cache')
      res.setHeader('X-Served-By', 'setHeaders')
      if (filePath.endsWith('.html')) res.setHeader('Content-Type', 'text/html; charset=iso-8859-1')
    },
  })
  const ok = await request(port, '/')
  t.is(ok.status, 200)
  t.is(ok.headers['cache-control'], 'no-cache', 'its Cache-Control wins over maxAge')
  t.is(ok.headers['content-type'], 'text/html; charset=iso-8859-1')
  t.is(ok.headers['x-served-by'], 'setHeaders')
  t.is(ok.headers['content-length'], '13')
  t.is(ok.body.toString(), '<p>hello</p>\n')
  const partial = await request(port, '/', { Range: 'bytes=3-7' })
  t.is(partial.status, 206)
  t.is(partial.headers['x-served-by'], 'setHeaders')
  t.is(partial.body.toString(), 'hello')
  const head = await request(port, '/', {}, 'HEAD')
  t.is(head.headers['x-served-by'], 'setHeaders')
  t.is(calls.length, 3)
  const notModified = await request(port, '/', { 'If-None-Match': ok.headers.etag ?? '' })
  t.is(notModified.status, 304)
  t.is(notModified.headers['x-served-by'], undefined)
  t.is(calls.length, 3, 'not called for a 304')
  t.deepEqual(calls[0], { path: file, size: 13, headersSent: false })
})

test('setHeaders that throws: serveFile rejects before any header, and the caller still answers', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'a.txt', 'a\n')
  const { port } = await serveWith(t, () => file, {
    setHeaders() {
      throw new Error('hook failed')
    },
  })
  const reply = await request(port, '/')
  t.is(reply.status, 500)
  t.is(reply.headers['x-error'], 'hook failed')
  t.is(reply.headers.etag, undefined)
})

// ---------------------------------------------------------------------------------------------
// download.

test('download: Content-Disposition attachment with the base name, a given name, or an ASCII fallback and filename*', async (t) => {
  const dir = tempDir(t)
  const file = write(dir, 'report 2024.pdf', Buffer.from('%PDF-1.7\n'))
  const { port } = await serveWith(
    t,
    () => file,
    (url) => ({ download: url === '/named' ? 'Résumé "final".pdf' : url === '/yes' }),
  )
  const plain = await request(port, '/yes')
  t.is(plain.headers['content-disposition'], 'attachment; filename="report 2024.pdf"')
  t.is(plain.headers['content-type'], 'application/pdf')
  t.is(plain.body.toString(), '%PDF-1.7\n')
  const named = await request(port, '/named', { Range: 'bytes=0-3' })
  t.is(named.status, 206)
  t.is(named.headers['content-disposition'], `attachment; filename="R_sum_ _final_.pdf"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf`)
  t.is(named.body.toString(), '%PDF')
  t.is((await request(port, '/no')).headers['content-disposition'], undefined)
})

test('download: curl -OJ saves the file under the name the header gives', async (t) => {
  const dir = tempDir(t)
  const data = pattern(70_000, 3)
  const file = write(dir, 'x.bin', data)
  const { port } = await serveWith(t, () => file, { download: 'saved-by-curl.bin' })
  const into = path.join(dir, 'downloads')
  fs.mkdirSync(into)
  const curl = await promisify(execFile)('curl', ['-sS', '-O', '-J', `http://127.0.0.1:${port}/whatever`], { cwd: into, timeout: 20_000 }).then(
    () => true,
    (error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return false
      throw error
    },
  )
  if (!curl) {
    t.log('curl is not installed')
    return
  }
  t.deepEqual(fs.readdirSync(into), ['saved-by-curl.bin'])
  t.is(sha256(fs.readFileSync(path.join(into, 'saved-by-curl.bin'))), sha256(data))
})

// ---------------------------------------------------------------------------------------------
// precompressed.

function precompressedFixture(t: ExecutionContext) {
  const dir = tempDir(t)
  const source = Buffer.from(Array.from({ length: 5000 }, (_, line) => `console.log(${(line * 7919) % 10007})\n`).join(''))
  const br = zlib.brotliCompressSync(source)
  const gz = zlib.gzipSync(source)
  // Node 20 has no zstd: the variant's bytes only have to be told apart, never decoded here.
  const zst = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), pattern(300, 9)])
  const files = {
    js: write(dir, 'app.js', source),
    br: write(dir, 'app.js.br', br),
    gz: write(dir, 'app.js.gz', gz),
    zst: write(dir, 'app.js.zst', zst),
    gzOnly: write(dir, 'style.css', 'body{}\n'.repeat(100)),
    plain: write(dir, 'plain.txt', 'no variants\n'),
  }
  write(dir, 'style.css.gz', zlib.gzipSync(fs.readFileSync(files.gzOnly)))
  // Not a regular file: never a variant.
  fs.mkdirSync(path.join(dir, 'plain.txt.br'))
  return { dir, files, source, br, gz, zst }
}

test('precompressed: the variant the client takes, with Content-Encoding, the original type, its own length and ETag, and Vary', async (t) => {
  const { dir, files, source, br, gz, zst } = precompressedFixture(t)
  const { port } = await serveWith(t, (url) => path.join(dir, url), { precompressed: true })
  const cases: Array<{ acceptEncoding?: string; encoding?: string; bytes: Buffer; file: string }> = [
    { acceptEncoding: 'gzip, deflate, br, zstd', encoding: 'br', bytes: br, file: files.br },
    { acceptEncoding: 'gzip, deflate', encoding: 'gzip', bytes: gz, file: files.gz },
    { acceptEncoding: 'zstd', encoding: 'zstd', bytes: zst, file: files.zst },
    { acceptEncoding: 'br;q=0, gzip;q=0.5, zstd;q=0.8', encoding: 'zstd', bytes: zst, file: files.zst },
    { acceptEncoding: 'br;q=0, zstd;q=0, *', encoding: 'gzip', bytes: gz, file: files.gz },
    { acceptEncoding: 'identity', bytes: source, file: files.js },
    { acceptEncoding: 'deflate', bytes: source, file: files.js },
    { bytes: source, file: files.js },
  ]
  for (const { acceptEncoding, encoding, bytes, file } of cases) {
    const what = `Accept-Encoding: ${acceptEncoding}`
    const reply = await request(port, '/app.js', acceptEncoding === undefined ? {} : { 'Accept-Encoding': acceptEncoding })
    t.is(reply.status, 200, what)
    t.is(reply.headers['content-encoding'], encoding, what)
    t.is(reply.headers['content-type'], 'text/javascript; charset=utf-8', what)
    t.is(reply.headers['content-length'], String(bytes.length), what)
    t.is(reply.headers.etag, strongEtagOf(file), what)
    t.is(reply.headers.vary, 'Accept-Encoding', what)
    t.true(reply.body.equals(bytes), what)
  }
  t.true(zlib.brotliDecompressSync(br).equals(source) && zlib.gunzipSync(gz).equals(source))
  // The server closes its fds once its side of the response is done, which may be just after the client has it all.
  t.true(
    await eventually(() => [files.js, files.br, files.gz, files.zst].flatMap((file) => fdsOpenOn(file)).length === 0),
    'every file and variant opened was closed',
  )
})

test('precompressed: fetch, which decodes what it asked for, reads the original bytes from the br and gzip variants', async (t) => {
  const { dir, source } = precompressedFixture(t)
  const { port } = await serveWith(t, (url) => path.join(dir, url), { precompressed: true })
  for (const encoding of ['br', 'gzip']) {
    const response = await within(fetch(`http://127.0.0.1:${port}/app.js`, { headers: { 'Accept-Encoding': encoding } }), 10_000, `fetch ${encoding}`)
    t.is(response.headers.get('content-encoding'), encoding)
    t.true(Buffer.from(await within(response.arrayBuffer(), 10_000, 'fetch body')).equals(source), encoding)
  }
})

test('precompressed: Vary on 206, 304, HEAD, 412 and 416 too; ranges are of the variant; several ranges get the whole variant', async (t) => {
  const { dir, files, br } = precompressedFixture(t)
  const { port } = await serveWith(t, (url) => path.join(dir, url), { precompressed: ['br', 'gzip'] })
  const brAccepted = { 'Accept-Encoding': 'br' }
  const partial = await request(port, '/app.js', { ...brAccepted, Range: 'bytes=10-109' })
  t.is(partial.status, 206)
  t.is(partial.headers['content-encoding'], 'br')
  t.is(partial.headers['content-range'], `bytes 10-109/${br.length}`)
  t.is(partial.headers.vary, 'Accept-Encoding')
  t.true(partial.body.equals(br.subarray(10, 110)))
  const notModified = await request(port, '/app.js', { ...brAccepted, 'If-None-Match': strongEtagOf(files.br) })
  t.is(notModified.status, 304)
  t.is(notModified.headers.vary, 'Accept-Encoding')
  const identityTag = await request(port, '/app.js', { ...brAccepted, 'If-None-Match': strongEtagOf(files.js) })
  t.is(identityTag.status, 200, "the identity file's tag does not validate the br variant")
  const head = await request(port, '/app.js', brAccepted, 'HEAD')
  t.is(head.headers['content-length'], String(br.length))
  t.is(head.headers.vary, 'Accept-Encoding')
  t.is(head.body.length, 0)
  t.is((await request(port, '/app.js', { ...brAccepted, 'If-Match': '"nope"' })).headers.vary, 'Accept-Encoding')
  const unsatisfiable = await request(port, '/app.js', { ...brAccepted, Range: `bytes=${br.length}-` })
  t.is(unsatisfiable.status, 416)
  t.is(unsatisfiable.headers['content-range'], `bytes */${br.length}`)
  t.is(unsatisfiable.headers.vary, 'Accept-Encoding')
  const several = await request(port, '/app.js', { ...brAccepted, Range: 'bytes=0-9,20-29' })
  t.is(several.status, 200)
  t.true(several.body.equals(br))
  // zstd is not configured: its variant is never sent, and the file still has variants.
  const zstd = await request(port, '/app.js', { 'Accept-Encoding': 'zstd' })
  t.is(zstd.headers['content-encoding'], undefined)
  t.is(zstd.headers.vary, 'Accept-Encoding')
})

test('precompressed: a file without variants has no Vary; a directory named like a variant is none; a variant by its own name is a file', async (t) => {
  const { dir, files, gz } = precompressedFixture(t)
  const { port } = await serveWith(t, (url) => path.join(dir, url), { precompressed: true })
  const plain = await request(port, '/plain.txt', { 'Accept-Encoding': 'br, gzip' })
  t.is(plain.status, 200)
  t.is(plain.headers['content-encoding'], undefined)
  t.is(plain.headers.vary, undefined)
  t.is(plain.body.toString(), 'no variants\n')
  // style.css has only a .gz: br asked, gzip not accepted, so the file itself, with Vary.
  const css = await request(port, '/style.css', { 'Accept-Encoding': 'br' })
  t.is(css.headers['content-encoding'], undefined)
  t.is(css.headers.vary, 'Accept-Encoding')
  const variantByName = await request(port, '/app.js.gz', { 'Accept-Encoding': 'gzip' })
  t.is(variantByName.headers['content-encoding'], undefined)
  t.is(variantByName.headers['content-type'], 'application/gzip')
  t.is(variantByName.headers.etag, strongEtagOf(files.gz))
  t.true(variantByName.body.equals(gz))
})

test('precompressed: Vary keeps what the response already varies on; off by default', async (t) => {
  const { dir } = precompressedFixture(t)
  const server = http.createServer((req, res) => {
    res.setHeader('Vary', 'Origin')
    void serveFile(req, res, path.join(dir, 'app.js'), { precompressed: req.url === '/on' })
  })
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.address() as net.AddressInfo).port
  t.is((await request(port, '/on', { 'Accept-Encoding': 'br' })).headers.vary, 'Origin, Accept-Encoding')
  const off = await request(port, '/off', { 'Accept-Encoding': 'br' })
  t.is(off.headers['content-encoding'], undefined)
  t.is(off.headers.vary, 'Origin')
})

// ---------------------------------------------------------------------------------------------
// Multipart ranges.

test('several ranges: 206 multipart/byteranges, parts in the order asked, exact Content-Length, each range sent with sendfile', async (t) => {
  const dir = tempDir(t)
  const data = pattern(3 * MiB, 4)
  const file = write(dir, 'movie.mp4', data)
  const { port, server } = await serveWith(t, () => file)
  const reports = captureReports(t)
  const ranges: Array<[number, number]> = [
    [2 * MiB, 2 * MiB + MiB / 2],
    [0, 99],
    [MiB, MiB + 9],
  ]
  const reply = await request(port, '/', { Range: `bytes=${ranges.map(([first, last]) => `${first}-${last}`).join(', ')}` })
  t.is(reply.status, 206)
  t.is(reply.headers['content-range'], undefined)
  t.is(reply.headers['content-length'], String(reply.body.length))
  const parts = multipartParts(reply)
  t.is(parts.length, 3)
  parts.forEach((part, index) => {
    const [first, last] = ranges[index]
    t.is(part.type, 'video/mp4')
    t.is(part.range, `bytes ${first}-${last}/${data.length}`)
    t.is(sha256(part.body), sha256(data.subarray(first, last + 1)))
  })
  const sent = reports.filter((report) => report.operation === 'sendFile' && report.method === 'sendfile')
  t.true(sent.length >= 3, `each part zero-copy (${sent.map((report) => report.method).join(', ')})`)
  void server
})

test('several ranges: HEAD has the headers of the GET and no body; adjacent ranges coalesce; maxRanges and overlaps give 200', async (t) => {
  const dir = tempDir(t)
  const data = pattern(10_000, 5)
  const file = write(dir, 'data.bin', data)
  const { port } = await serveWith(
    t,
    () => file,
    (url) => (url === '/max2' ? { maxRanges: 2 } : {}),
  )
  const get = await request(port, '/', { Range: 'bytes=0-9,100-109' })
  const head = await request(port, '/', { Range: 'bytes=0-9,100-109' }, 'HEAD')
  t.is(head.status, 206)
  t.is(head.headers['content-length'], get.headers['content-length'])
  t.regex(head.headers['content-type'] ?? '', /^multipart\/byteranges; boundary=[0-9a-f]{24}$/)
  t.is(head.body.length, 0)
  const coalesced = await request(port, '/', { Range: 'bytes=100-199,0-99' })
  t.is(coalesced.status, 206)
  t.is(coalesced.headers['content-range'], 'bytes 0-199/10000')
  t.true(coalesced.body.equals(data.subarray(0, 200)))
  const three = 'bytes=0-0,10-10,20-20'
  t.is((await request(port, '/', { Range: three })).status, 206)
  const capped = await request(port, '/max2', { Range: three })
  t.is(capped.status, 200)
  t.true(capped.body.equals(data))
  const attack = await request(port, '/', { Range: 'bytes=0-,0-,0-,0-' })
  t.is(attack.status, 200)
  t.true(attack.body.equals(data))
  const unsatisfiable = await request(port, '/', { Range: 'bytes=20000-,30000-' })
  t.is(unsatisfiable.status, 416)
  const oneGood = await request(port, '/', { Range: 'bytes=5-9,20000-' })
  t.is(oneGood.status, 206)
  t.is(oneGood.headers['content-range'], 'bytes 5-9/10000')
})

test('several ranges on a kept-alive connection: the next response is framed right after the multipart body', async (t) => {
  const dir = tempDir(t)
  const data = pattern(200_000, 6)
  const file = write(dir, 'data.bin', data)
  const { port } = await serveWith(t, () => file)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const sockets = new Set<net.Socket>()
  const viaAgent = (headers: Record<string, string>) =>
    within(
      new Promise<Reply>((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/', headers, agent }, (res) => {
          sockets.add(res.socket)
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        })
        req.once('error', reject)
      }),
      10_000,
      'keep-alive request',
    )
  for (let round = 0; round < 3; round++) {
    const multi = await viaAgent({ Range: 'bytes=0-99999,150000-150009' })
    t.deepEqual(
      multipartParts(multi).map((part) => sha256(part.body)),
      [sha256(data.subarray(0, 100_000)), sha256(data.subarray(150_000, 150_010))],
    )
    const single = await viaAgent({ Range: 'bytes=-5' })
    t.true(single.body.equals(data.subarray(-5)))
  }
  t.is(sockets.size, 1, 'one connection for every response')
})

test('several ranges behind compression(): the multipart body goes through res.write and arrives whole once decoded', async (t) => {
  const dir = tempDir(t)
  const data = Buffer.from('line of text\n'.repeat(20_000))
  const file = write(dir, 'log.txt', data)
  const app = express()
  // Compresses whatever the type (multipart/byteranges is not in its list of compressible types).
  app.use(compression({ threshold: 0, filter: () => true }))
  app.get('/log.txt', (req, res, next) => {
    serveFile(req, res, file).catch(next)
  })
  const server = http.createServer(app)
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.address() as net.AddressInfo).port
  const reply = await request(port, '/log.txt', { 'Accept-Encoding': 'gzip', Range: 'bytes=0-12,130000-130012' })
  t.is(reply.status, 206)
  t.is(reply.headers['content-encoding'], 'gzip')
  const decoded = { ...reply, body: zlib.gunzipSync(reply.body) }
  const parts = multipartParts(decoded)
  t.deepEqual(
    parts.map((part) => [part.type, part.range, part.body.toString()]),
    [
      ['text/plain; charset=utf-8', `bytes 0-12/${data.length}`, 'line of text\n'],
      ['text/plain; charset=utf-8', `bytes 130000-130012/${data.length}`, 'line of text\n'],
    ],
  )
})

test('several ranges over HTTPS: the part headers are encrypted with the ranges, in order', async (t) => {
  const dir = tempDir(t)
  const data = pattern(400_000, 8)
  const file = write(dir, 'data.bin', data)
  const { key, cert } = await selfSignedCertificate()
  const server = https.createServer({ key, cert }, (req, res) => {
    serveFile(req, res, file).catch(() => res.destroy())
  })
  t.teardown(() => {
    server.closeAllConnections()
    server.close()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
  const port = (server.address() as net.AddressInfo).port
  const reply = await within(
    new Promise<Reply>((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/', headers: { Range: 'bytes=300000-399999,0-9' }, ca: cert, servername: 'localhost' }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.once('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
      })
      req.once('error', reject)
    }),
    10_000,
    'https GET',
  )
  t.is(reply.status, 206)
  t.is(reply.headers['content-length'], String(reply.body.length))
  t.deepEqual(
    multipartParts(reply).map((part) => [part.range, sha256(part.body)]),
    [
      [`bytes 300000-399999/${data.length}`, sha256(data.subarray(300_000, 400_000))],
      [`bytes 0-9/${data.length}`, sha256(data.subarray(0, 10))],
    ],
  )
})

test('several ranges pipelined: responses sent at once come back in order, each multipart body whole between the others', async (t) => {
  const dir = tempDir(t)
  const data = pattern(300_000, 10)
  const file = write(dir, 'data.bin', data)
  const { port } = await serveWith(t, () => file)
  const socket = net.connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  const requestFor = (range: string, close = false) => `GET / HTTP/1.1\r\nHost: x\r\nRange: ${range}\r\n${close ? 'Connection: close\r\n' : ''}\r\n`
  const asked = ['bytes=0-99999,200000-299999', 'bytes=-1', 'bytes=5-9,100-104,250000-']
  socket.write(asked.map((range, index) => requestFor(range, index === asked.length - 1)).join(''))
  const received = await within(
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.once('end', () => resolve(Buffer.concat(chunks)))
      socket.once('error', reject)
    }),
    10_000,
    'three pipelined responses',
  )
  const replies: Reply[] = []
  let at = 0
  while (at < received.length) {
    const headEnd = received.indexOf('\r\n\r\n', at)
    const [statusLine, ...lines] = received.subarray(at, headEnd).toString('latin1').split('\r\n')
    const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
    const length = Number(headers['content-length'])
    replies.push({ status: Number(statusLine.split(' ')[1]), headers, body: received.subarray(headEnd + 4, headEnd + 4 + length) })
    at = headEnd + 4 + length
  }
  t.deepEqual(
    replies.map((reply) => reply.status),
    [206, 206, 206],
  )
  t.deepEqual(
    multipartParts(replies[0]).map((part) => sha256(part.body)),
    [sha256(data.subarray(0, 100_000)), sha256(data.subarray(200_000, 300_000))],
  )
  t.true(replies[1].body.equals(data.subarray(-1)))
  t.deepEqual(
    multipartParts(replies[2]).map((part) => part.body.toString('hex')),
    [data.subarray(5, 10), data.subarray(100, 105), data.subarray(250_000)].map((bytes) => bytes.toString('hex')),
  )
})

test('the new options are checked up front, with the codes Node gives', async (t) => {
  const req = new http.IncomingMessage(new net.Socket())
  const res = new http.ServerResponse(req)
  const cases: Array<{ options: Record<string, unknown>; code: string }> = [
    { options: { etag: 'maybe' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { etag: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { precompressed: 'br' }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { precompressed: ['deflate'] }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { maxRanges: 0 }, code: 'ERR_OUT_OF_RANGE' },
    { options: { maxRanges: 1.5 }, code: 'ERR_OUT_OF_RANGE' },
    { options: { maxRanges: 1001 }, code: 'ERR_OUT_OF_RANGE' },
    { options: { maxRanges: '2' }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { setHeaders: 'x' }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { download: 1 }, code: 'ERR_INVALID_ARG_TYPE' },
    { options: { download: '' }, code: 'ERR_INVALID_ARG_VALUE' },
    { options: { download: 'a\0b' }, code: 'ERR_INVALID_ARG_VALUE' },
  ]
  for (const { options, code } of cases) {
    const error = await serveFile(req, res, '/nonexistent', options as ServeFileOptions).then(
      () => undefined,
      (failure: NodeJS.ErrnoException) => failure,
    )
    t.is(error?.code, code, JSON.stringify(options))
  }
  t.is(res.headersSent, false)
})
