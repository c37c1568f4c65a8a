/**
 * The benchmarks are not part of the test suite, but their smoke mode is, so the scripts never
 * rot: tiny sizes, every scenario, byte counts and hashes checked by the scripts themselves, and
 * the results files generated (into bench/build/, never over the real ones).
 */
import test from 'ava'
import { execFile } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as path from 'node:path'

const root = path.join(__dirname, '..')

function runScript(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', ...args], { cwd: root, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : 1) : 0, output: `${stdout}\n${stderr}` }),
    )
  })
}

/** The results files only a full `npm run bench` may write. */
function realResults(): Record<string, string> {
  const hashes: Record<string, string> = {}
  for (const name of ['RESULTS.md', 'RESULTS-core.md', 'RESULTS-http.md']) {
    const file = path.join(root, 'bench', name)
    hashes[name] = fs.existsSync(file) ? crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex') : 'missing'
  }
  return hashes
}

test('the benchmark runs every scenario in smoke mode, verifies the bytes and writes only into bench/build', async (t) => {
  const before = realResults()
  const { code, output } = await runScript(['bench/index.ts', '--smoke'])
  t.is(code, 0, output)
  for (const scenario of ['bulk', 'concurrency', 'small-calls', 'copy', 'http']) t.true(output.includes(`scenario ${scenario}`), `${scenario} ran`)
  // Every target row names its baseline and says whether it was met.
  t.regex(output, /\| concurrency \| `sendFile\(socket, path\)` wall time, [^|]+ \| C epoll \+ non-blocking `sendfile`, one fd opened at startup/)
  t.regex(output, /\| http \| `createStaticHandler` requests\/s, 16 KiB file[^|]+\| in-memory ceiling: `res\.end\(buffer\)`/)
  t.regex(output, /\| http \| `createStaticHandler` server's event-loop delay p99 [^|]+ keep-alive connections/)
  // Every HTTP server kind was measured, Bun and nginx when installed (else a note says why not:
  // CI machines may lack them).
  const http = fs.readFileSync(path.join(root, 'bench', 'build', 'smoke-RESULTS-http.md'), 'utf8')
  for (const server of ['`createStaticHandler(root)`', '`serveFile(', 'in-memory ceiling: `res.end(buffer)`', '`pipeline(fs.createReadStream(', '`send(req, '])
    t.true(http.includes(`| 16 KiB | ${server}`), `${server} was measured`)
  t.regex(http, /\| 16 KiB \| Bun |Bun left out: /)
  t.regex(http, /\| 16 KiB \| nginx |nginx left out: /)
  const written = [...output.matchAll(/\[bench\] wrote (\S+)/g)].map((match) => match[1])
  t.true(written.length >= 4, output)
  for (const file of written) t.true(file.startsWith(path.join('bench', 'build') + path.sep), `a smoke run wrote ${file}`)
  t.deepEqual(realResults(), before)
})
