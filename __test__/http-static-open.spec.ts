/**
 * How the static handler finds and keeps its files: opened beneath the root with no
 * check-then-open window (a directory swapped for a symlink meanwhile leads nowhere), the
 * `symlinks`, `extensions` and `index` options, and the open-file cache (staleness bound,
 * eviction, `close()`).
 */
import test, { type ExecutionContext } from 'ava'
import { type ChildProcess, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'

import { type StaticHandler, type StaticOptions, createStaticHandler } from '..'
import { linuxTest, tempDir, tick } from './helpers'

interface Reply {
  status: number
  body: string
  headers: http.IncomingHttpHeaders
}

/** One GET on a kept-alive agent; bounded: a response that never ends fails the test. */
function get(port: number, target: string, agent: http.Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port, path: target, agent }, (response) => {
      const chunks: Buffer[] = []
      response.on('data', (chunk: Buffer) => chunks.push(chunk))
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: response.headers }))
      response.on('error', reject)
    })
    request.setTimeout(10_000, () => request.destroy(new Error(`GET ${target} timed out`)))
    request.on('error', reject)
  })
}

async function serve(t: ExecutionContext, root: string, options?: StaticOptions): Promise<{ port: number; handler: StaticHandler; agent: http.Agent }> {
  const handler = createStaticHandler(root, options)
  const server = http.createServer(handler)
  const agent = new http.Agent({ keepAlive: true, maxSockets: 8 })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    agent.destroy()
    handler.close()
    server.closeAllConnections()
    await new Promise((resolve) => server.close(resolve))
  })
  return { port: (server.address() as net.AddressInfo).port, handler, agent }
}

/** A root with `inside.txt`, `dir/f.txt`, and an `outside` directory beside it. */
function tree(t: ExecutionContext): { base: string; root: string; outside: string } {
  const base = fs.realpathSync(tempDir(t))
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  fs.mkdirSync(path.join(root, 'dir'), { recursive: true })
  fs.mkdirSync(outside)
  fs.writeFileSync(path.join(root, 'inside.txt'), 'inside')
  fs.writeFileSync(path.join(root, 'dir', 'f.txt'), 'in dir')
  fs.writeFileSync(path.join(outside, 'f.txt'), 'OUTSIDE')
  return { base, root, outside }
}

test('a directory swapped for a symlink out of root while requests resolve: 2000 requests, not one outside byte', async (t) => {
  const { root, outside } = tree(t)
  const real = path.join(root, 'real-d')
  const link = path.join(root, 'link-d')
  fs.mkdirSync(real)
  fs.writeFileSync(path.join(real, 'f.txt'), 'inside d')
  fs.symlinkSync(outside, link)
  fs.renameSync(real, path.join(root, 'd'))
  // Another process swaps root/d between the directory and the symlink as fast as it can.
  const swapper: ChildProcess = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs')
       const [d, real, link] = process.argv.slice(1)
       process.on('SIGTERM', () => process.exit(0))
       for (;;) { fs.renameSync(d, real); fs.renameSync(link, d); fs.renameSync(d, link); fs.renameSync(real, d) }`,
      path.join(root, 'd'),
      real,
      link,
    ],
    { stdio: 'ignore' },
  )
  t.teardown(() => swapper.kill('SIGKILL'))
  // No cache: every request resolves the path again, racing the swapper.
  const { port, agent } = await serve(t, root, { openFileCache: false })
  const counts: Record<string, number> = {}
  for (let batch = 0; batch < 100; batch++) {
    const replies = await Promise.all(Array.from({ length: 20 }, () => get(port, '/d/f.txt', agent)))
    for (const reply of replies) {
      const key = `${reply.status} ${reply.status === 200 ? reply.body : ''}`
      counts[key] = (counts[key] ?? 0) + 1
    }
  }
  swapper.kill('SIGKILL')
  t.log(JSON.stringify(counts))
  t.is(counts['200 OUTSIDE'] ?? 0, 0, 'nothing outside root was served')
  t.true((counts['200 inside d'] ?? 0) > 0, 'the directory was served while it was one')
  t.is(
    Object.values(counts).reduce((sum, count) => sum + count, 0),
    2000,
  )
  t.deepEqual(
    Object.keys(counts).sort(),
    Object.keys(counts)
      .filter((key) => key === '200 inside d' || key === '404 ')
      .sort(),
  )
})

test('symlinks: inside (default) follows links that stay in root; deny follows none; follow follows any', async (t) => {
  const { root, outside } = tree(t)
  fs.symlinkSync('inside.txt', path.join(root, 'relative-link'))
  fs.symlinkSync(path.join(root, 'dir'), path.join(root, 'absolute-link'))
  fs.symlinkSync('../../outside/f.txt', path.join(root, 'dir', 'up-and-out'))
  fs.symlinkSync(outside, path.join(root, 'out'))
  const inside = await serve(t, root)
  const deny = await serve(t, root, { symlinks: 'deny' })
  const follow = await serve(t, root, { symlinks: 'follow' })
  const cases: Array<[string, string, string, string]> = [
    // path, inside, deny, follow
    ['/inside.txt', '200 inside', '200 inside', '200 inside'],
    ['/relative-link', '200 inside', '404', '200 inside'],
    ['/absolute-link/f.txt', '200 in dir', '404', '200 in dir'],
    ['/dir/up-and-out', '404', '404', '200 OUTSIDE'],
    ['/out/f.txt', '404', '404', '200 OUTSIDE'],
  ]
  for (const [target, ...expected] of cases) {
    const got = []
    for (const server of [inside, deny, follow]) {
      const reply = await get(server.port, target, server.agent)
      got.push(reply.status === 200 ? `200 ${reply.body}` : String(reply.status))
    }
    t.deepEqual(got, expected, target)
  }
  t.throws(() => createStaticHandler(root, { symlinks: 'sometimes' as 'deny' }), { code: 'ERR_INVALID_ARG_VALUE' })
})

test('extensions and index lists: the first that exists, never for a path that exists or ends in a slash', async (t) => {
  const { root } = tree(t)
  fs.writeFileSync(path.join(root, 'about.html'), 'about html')
  fs.writeFileSync(path.join(root, 'about.htm'), 'about htm')
  fs.writeFileSync(path.join(root, 'plain'), 'plain file')
  fs.writeFileSync(path.join(root, 'plain.html'), 'plain html')
  fs.mkdirSync(path.join(root, 'docs'))
  fs.writeFileSync(path.join(root, 'docs', 'index.htm'), 'docs htm')
  fs.mkdirSync(path.join(root, 'both'))
  fs.mkdirSync(path.join(root, 'both', 'index.html'))
  fs.writeFileSync(path.join(root, 'both', 'default.txt'), 'both default')
  fs.writeFileSync(path.join(root, '.hidden.html'), 'hidden')
  const { port, agent } = await serve(t, root, { extensions: ['html', 'htm'], index: ['index.html', 'index.htm', 'default.txt'] })
  const text = async (target: string) => {
    const reply = await get(port, target, agent)
    return reply.status === 200 ? `200 ${reply.body}` : String(reply.status)
  }
  t.is(await text('/about'), '200 about html')
  t.is(await text('/about/'), '404')
  t.is(await text('/plain'), '200 plain file', 'a path that exists is served as it is')
  t.is(await text('/docs/'), '200 docs htm')
  t.is(await text('/docs'), '301')
  t.is(await text('/both/'), '200 both default', 'an index that is a directory is skipped')
  t.is(await text('/.hidden'), '404', 'an extension does not make a dotfile servable')
  t.is(await text('/missing'), '404')
  for (const [options, code] of [
    [{ extensions: 'html' }, 'ERR_INVALID_ARG_TYPE'],
    [{ extensions: ['.html'] }, 'ERR_INVALID_ARG_VALUE'],
    [{ extensions: ['a/b'] }, 'ERR_INVALID_ARG_VALUE'],
    [{ index: ['index.html', '../x'] }, 'ERR_INVALID_ARG_VALUE'],
    [{ index: [1] }, 'ERR_INVALID_ARG_TYPE'],
    [{ openFileCache: { max: 0 } }, 'ERR_OUT_OF_RANGE'],
    [{ openFileCache: { validMs: -1 } }, 'ERR_OUT_OF_RANGE'],
    [{ openFileCache: 'yes' }, 'ERR_INVALID_ARG_TYPE'],
  ] as const) {
    t.throws(() => createStaticHandler(root, options as unknown as StaticOptions), { code }, JSON.stringify(options))
  }
})

test('open-file cache: a replaced, deleted or truncated file is served from the cached fd until validMs has passed, then as it now is', async (t) => {
  const { root } = tree(t)
  const file = path.join(root, 'hot.txt')
  fs.writeFileSync(file, 'version 1')
  const validMs = 300
  const { port, agent } = await serve(t, root, { openFileCache: { max: 10, validMs } })
  const body = async () => {
    const reply = await get(port, '/hot.txt', agent)
    return reply.status === 200 ? reply.body : String(reply.status)
  }
  t.is(await body(), 'version 1')
  const replaced = performance.now()
  fs.writeFileSync(`${file}.new`, 'version 2')
  fs.renameSync(`${file}.new`, file)
  const early = await body()
  // Within validMs the cached fd may still answer; either way the bytes are one whole version.
  t.true(early === 'version 1' || early === 'version 2', early)
  await tick(Math.max(0, validMs - (performance.now() - replaced)) + 20)
  t.is(await body(), 'version 2', 'noticed once validMs has passed')

  fs.unlinkSync(file)
  const deleted = performance.now()
  await tick(Math.max(0, validMs - (performance.now() - deleted)) + 20)
  t.is(await body(), '404', 'a deleted file is 404 once validMs has passed')

  // Truncated under a cached fd: the headers promised the old size, so the connection closes short.
  fs.writeFileSync(file, 'x'.repeat(100_000))
  await tick(validMs + 20)
  t.is((await body()).length, 100_000)
  fs.truncateSync(file, 10)
  const outcome = await get(port, '/hot.txt', agent).then(
    (reply) => `${reply.status} ${reply.body.length}`,
    (error: NodeJS.ErrnoException) => error.code ?? error.message,
  )
  t.true(outcome === '200 10' || outcome === 'ECONNRESET' || outcome === 'ERR_STREAM_PREMATURE_CLOSE' || /aborted/.test(outcome), outcome)
  await tick(validMs + 20)
  t.is(await body(), 'x'.repeat(10), 'the truncated file, whole, once validMs has passed')
})

test('open-file cache: a long validMs serves the cached fd (no open); validMs 0 and a closed handler see every change', async (t) => {
  const { root } = tree(t)
  const file = path.join(root, 'hot.txt')
  fs.writeFileSync(file, 'old')
  const cached = await serve(t, root, { openFileCache: { validMs: 3_600_000 } })
  const uncached = await serve(t, root, { openFileCache: { validMs: 0 } })
  const off = await serve(t, root, { openFileCache: false })
  const body = async (server: { port: number; agent: http.Agent }) => (await get(server.port, '/hot.txt', server.agent)).body
  for (const server of [cached, uncached, off]) t.is(await body(server), 'old')
  fs.writeFileSync(`${file}.new`, 'new')
  fs.renameSync(`${file}.new`, file)
  t.is(await body(cached), 'old', 'the cached fd still reads the file it opened')
  t.is(await body(uncached), 'new')
  t.is(await body(off), 'new')
  cached.handler.close()
  t.is(await body(cached), 'new', 'after close() every request opens the file')
  cached.handler.close()
})

/** What this process holds open under `dir` (its fds' targets, from /proc), sorted. */
function heldUnder(dir: string): string[] {
  const held: string[] = []
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    try {
      const target = fs.readlinkSync(`/proc/self/fd/${fd}`)
      if (target === dir || target.startsWith(dir + path.sep)) held.push(path.relative(dir, target) || '.')
    } catch {
      // The fd readdir itself used, closed by now.
    }
  }
  return held.sort()
}

linuxTest('open-file cache: at most max fds, least recently used closed first, all closed by close()', async (t) => {
  const { root } = tree(t)
  for (let n = 0; n < 6; n++) fs.writeFileSync(path.join(root, `f${n}.txt`), `file ${n}`)
  const { port, agent, handler } = await serve(t, root, { openFileCache: { max: 3, validMs: 3_600_000 } })
  t.is((await get(port, '/inside.txt', agent)).body, 'inside')
  t.deepEqual(heldUnder(root), ['.', 'inside.txt'], 'the root directory and the file served')
  for (let n = 0; n < 6; n++) t.is((await get(port, `/f${n}.txt`, agent)).body, `file ${n}`)
  t.deepEqual(heldUnder(root), ['.', 'f3.txt', 'f4.txt', 'f5.txt'], 'the three most recently used')
  t.is((await get(port, '/f3.txt', agent)).body, 'file 3')
  t.is((await get(port, '/f0.txt', agent)).body, 'file 0')
  t.deepEqual(heldUnder(root), ['.', 'f0.txt', 'f3.txt', 'f5.txt'], 'f4, the least recently used, was closed')
  handler.close()
  t.deepEqual(heldUnder(root), [], 'close() closed the files and the root directory')
  t.is((await get(port, '/f1.txt', agent)).body, 'file 1', 'served after close(), without the cache')
  t.deepEqual(heldUnder(root), [], 'and nothing stays open')
})

test('precompressed variants beneath the root: chosen by Accept-Encoding, never through a symlink out of root', async (t) => {
  const { root, outside } = tree(t)
  fs.writeFileSync(path.join(root, 'app.js'), 'console.log("plain")\n')
  fs.writeFileSync(path.join(root, 'app.js.br'), 'BROTLI BYTES')
  fs.writeFileSync(path.join(root, 'lib.js'), 'plain lib\n')
  fs.writeFileSync(path.join(outside, 'lib.js.gz'), 'GZIP FROM OUTSIDE')
  fs.symlinkSync(path.join(outside, 'lib.js.gz'), path.join(root, 'lib.js.gz'))
  const { port, agent, handler } = await serve(t, root, { precompressed: true })
  const request = (target: string, encoding?: string) =>
    new Promise<Reply>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port, path: target, agent, headers: encoding === undefined ? {} : { 'Accept-Encoding': encoding } }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString(), headers: res.headers }))
      })
      req.on('error', reject)
    })
  const br = await request('/app.js', 'gzip, br')
  t.is(br.body, 'BROTLI BYTES')
  t.is(br.headers['content-encoding'], 'br')
  t.regex(br.headers['content-type'] ?? '', /javascript/)
  t.is(br.headers.vary, 'Accept-Encoding')
  const plain = await request('/app.js', 'gzip')
  t.is(plain.body, 'console.log("plain")\n')
  t.is(plain.headers['content-encoding'], undefined)
  t.is(plain.headers.vary, 'Accept-Encoding', 'the file has a variant, so caches must key on Accept-Encoding')
  const escaped = await request('/lib.js', 'gzip')
  t.is(escaped.body, 'plain lib\n', 'a variant that leads out of root is not a variant')
  t.is(escaped.headers['content-encoding'], undefined)
  // Variant leases are released: only cache entries stay open, and close() closes them.
  handler.close()
  if (process.platform === 'linux') t.deepEqual(heldUnder(root), [])
})

test('a missing path is remembered for validMs, then looked for again', async (t) => {
  const { root } = tree(t)
  const validMs = 200
  const { port, agent } = await serve(t, root, { extensions: ['html'], openFileCache: { validMs } })
  t.is((await get(port, '/late', agent)).status, 404)
  const created = performance.now()
  fs.writeFileSync(path.join(root, 'late.html'), 'here now')
  await tick(Math.max(0, validMs - (performance.now() - created)) + 20)
  const reply = await get(port, '/late', agent)
  t.is(`${reply.status} ${reply.body}`, '200 here now')
})

test('setHeaders gets an fs.Stats of the file opened beneath the root, equal to what fs.statSync says', async (t) => {
  const { root } = tree(t)
  const file = path.join(root, 'dir', 'f.txt')
  const seen: Array<{ path: string; stats: fs.Stats }> = []
  const { port, agent } = await serve(t, root, {
    setHeaders: (res, filePath, stats) => {
      seen.push({ path: filePath, stats })
      res.setHeader('X-Size', String(stats.size))
    },
  })
  const reply = await get(port, '/dir/f.txt', agent)
  t.is(reply.headers['x-size'], '6')
  t.is(seen.length, 1)
  const { stats } = seen[0]
  const expected = fs.statSync(file)
  t.true(stats instanceof fs.Stats)
  t.true(stats.isFile())
  t.false(stats.isDirectory())
  for (const key of ['dev', 'ino', 'mode', 'nlink', 'uid', 'gid', 'size', 'blksize', 'blocks', 'mtimeMs', 'ctimeMs'] as const)
    t.is(stats[key], expected[key], key)
  t.is(stats.mtime.getTime(), expected.mtime.getTime())
  t.is(seen[0].path, file)
})
