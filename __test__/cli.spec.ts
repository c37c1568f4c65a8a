/**
 * The `zerocopy` command line, driven as a process the way a user drives it: `serve` answered
 * by curl (fetch where curl is missing), `send` into `receive`, `copy`, the progress bar on a
 * pseudo-terminal, and the exit codes.
 */
import test, { type ExecutionContext } from 'ava'
import { execFile, execFileSync } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import * as zlib from 'node:zlib'
import { promisify } from 'node:util'

import { BIN, CliProcess, WAIT_MS, runCli } from './cli-process'
import { sha256, tempDir, writeFixture } from './helpers'

const run = promisify(execFile)
const { version } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8')) as { version: string }

const MiB = 1024 * 1024
const STACK_FRAME = /^\s+at /m
/** A summary line as `send`/`copy` print it off a terminal: `sent 64.0 MiB in 0.05 s, 1.3 GB/s, zero-copy`. */
const RATE = String.raw`[\d.]+ s, (?:[\d.]+ [kMGT]?B/s|-)`

function hasCommand(command: string, args: string[]): boolean {
  try {
    execFileSync(command, args, { stdio: 'ignore', timeout: WAIT_MS })
    return true
  } catch {
    return false
  }
}

const hasCurl = hasCommand('curl', ['--version'])

interface Answer {
  status: number
  headers: Record<string, string>
  body: Buffer
}

/** A GET as a user makes it: with curl where it is installed, else with fetch. */
async function get(dir: string, url: string, headers: Record<string, string> = {}): Promise<Answer> {
  if (!hasCurl) {
    const response = await fetch(url, { headers, signal: AbortSignal.timeout(WAIT_MS) })
    return { status: response.status, headers: Object.fromEntries(response.headers), body: Buffer.from(await response.arrayBuffer()) }
  }
  const bodyFile = path.join(dir, `body-${crypto.randomBytes(4).toString('hex')}`)
  const headerArgs = Object.entries(headers).flatMap(([name, value]) => ['-H', `${name}: ${value}`])
  const { stdout } = await run('curl', ['-sS', '--max-time', String(WAIT_MS / 1000), '-D', '-', '-o', bodyFile, ...headerArgs, url])
  const [statusLine, ...lines] = stdout.trim().split('\r\n')
  const body = fs.existsSync(bodyFile) ? fs.readFileSync(bodyFile) : Buffer.alloc(0)
  fs.rmSync(bodyFile, { force: true })
  return {
    status: Number(statusLine.split(' ')[1]),
    headers: Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()])),
    body,
  }
}

/** `zerocopy serve dir --port 0 …`, running; resolves with its base URL once it prints it. */
async function startServe(t: ExecutionContext, dir: string, options: string[] = []): Promise<{ server: CliProcess; base: string; port: number }> {
  const server = new CliProcess(t, ['serve', dir, '--port', '0', ...options])
  const [base, port] = await server.waitFor('stdout', /(http:\/\/127\.0\.0\.1:(\d+)\/)\n/).then((match) => [match[1], Number(match[2])] as const)
  return { server, base, port }
}

/** `zerocopy receive 0 …`, running; resolves with the port it printed on stderr. */
async function startReceive(t: ExecutionContext, options: string[]): Promise<{ receiver: CliProcess; address: string }> {
  const receiver = new CliProcess(t, ['receive', '0', ...options])
  const [, port] = await receiver.waitFor('stderr', /listening on 127\.0\.0\.1:(\d+)\n/)
  return { receiver, address: `127.0.0.1:${port}` }
}

function fileHash(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256')
    fs.createReadStream(file)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject)
  })
}

/** A port nothing listens on: the kernel's pick, released again. */
async function closedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as net.AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

test('--help, <command> --help and --version print to stdout and exit 0', async (t) => {
  const help = await runCli(['--help'])
  t.is(help.code, 0)
  for (const command of ['serve', 'send', 'receive', 'copy']) t.regex(help.stdout, new RegExp(`^  ${command} `, 'm'))
  t.is(help.stderr, '')
  for (const command of ['serve', 'send', 'receive', 'copy']) {
    const commandHelp = await runCli([command, '--help'])
    t.is(commandHelp.code, 0, command)
    t.true(commandHelp.stdout.startsWith(`usage: zerocopy ${command} `), commandHelp.stdout)
    t.regex(commandHelp.stdout, /--help/)
  }
  const versions = await Promise.all([runCli(['--version']), runCli(['-v'])])
  for (const printed of versions) t.deepEqual([printed.code, printed.stdout, printed.stderr], [0, `${version}\n`, ''])
})

test('bad arguments exit 2 with a one-line message and the usage line, never a stack trace', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /^zerocopy: missing command$/],
    [['frobnicate'], /^zerocopy: unknown command 'frobnicate'$/],
    [['--frobnicate'], /^zerocopy: unknown option '--frobnicate'$/],
    [['serve', '--bogus'], /^zerocopy serve: unknown option '--bogus'$/],
    [['serve', '--port', '70000'], /^zerocopy serve: option '--port' must be an integer from 0 to 65535, not '70000'$/],
    [['serve', '--port'], /^zerocopy serve: option '--port' needs a value$/],
    [['serve', '--quiet=yes'], /^zerocopy serve: option '--quiet' takes no value$/],
    [['serve', '--dotfiles', 'maybe'], /^zerocopy serve: option '--dotfiles' must be one of allow, deny, ignore, not 'maybe'$/],
    [['serve', '--max-age', '1.5'], /^zerocopy serve: option '--max-age' must be an integer/],
    [['serve', '--no-cache', '--max-age', '60'], /^zerocopy serve: options '--no-cache' and '--max-age' contradict each other$/],
    [['serve', 'a', 'b'], /^zerocopy serve: unexpected argument 'b'$/],
    [['send', 'file'], /^zerocopy send: missing <host:port>$/],
    [['send', 'file', 'localhost'], /^zerocopy send: 'localhost' is not host:port/],
    [['send', 'file', '127.0.0.1:9', '--offset', '-5'], /^zerocopy send: option '--offset' must be an integer/],
    [['receive', 'ninety'], /^zerocopy receive: the port must be a number from 0 to 65535, not 'ninety'$/],
    [['copy', 'a'], /^zerocopy copy: missing <dst>$/],
    [['copy', 'a', 'b', '--exclusive=no'], /^zerocopy copy: option '--exclusive' takes no value$/],
  ]
  const results = await Promise.all(cases.map(([args]) => runCli(args)))
  for (const [index, [args, message]] of cases.entries()) {
    const { code, stdout, stderr } = results[index]
    const label = `zerocopy ${args.join(' ')}`
    t.is(code, 2, label)
    t.is(stdout, '', label)
    const lines = stderr.split('\n')
    t.is(lines.length, 3, `${label}: ${stderr}`)
    t.regex(lines[0], message, label)
    t.regex(lines[1], /^usage: zerocopy /, label)
    t.notRegex(stderr, STACK_FRAME, label)
  }
})

test('serve answers with exact bytes, 206 ranges, 304s and 404s, and logs one line per response', async (t) => {
  const dir = tempDir(t)
  const data = crypto.randomBytes(MiB + 7)
  writeFixture(dir, 'data.bin', data)
  const { server, base } = await startServe(t, dir)

  const whole = await get(dir, `${base}data.bin`)
  t.is(whole.status, 200)
  t.is(whole.headers['content-length'], String(data.length))
  t.is(sha256(whole.body), sha256(data))

  const range = await get(dir, `${base}data.bin`, { Range: 'bytes=100-199' })
  t.is(range.status, 206)
  t.is(range.headers['content-range'], `bytes 100-199/${data.length}`)
  t.deepEqual(range.body, data.subarray(100, 200))

  const cached = await get(dir, `${base}data.bin`, { 'If-None-Match': whole.headers.etag })
  t.is(cached.status, 304)
  t.is(cached.body.length, 0)

  const missing = await get(dir, `${base}missing.txt`)
  t.is(missing.status, 404)

  // Each line is written when its response closes, which may be just after the client has it.
  const expected = [
    new RegExp(String.raw`^\S+Z GET /data\.bin 200 ${data.length} B [\d.]+ ms zero-copy$`, 'm'),
    /^\S+Z GET \/data\.bin 206 100 B [\d.]+ ms zero-copy$/m,
    /^\S+Z GET \/data\.bin 304 0 B [\d.]+ ms -$/m,
    /^\S+Z GET \/missing\.txt 404 \d+ B [\d.]+ ms stream$/m,
  ]
  for (const line of expected) await server.waitFor('stdout', line)
  t.is(server.stdout.trim().split('\n').length, 1 + expected.length, `the URL, then one line per response:\n${server.stdout}`)

  server.child.kill('SIGTERM')
  const { code, stderr } = await server.finished()
  t.is(code, 0)
  t.is(stderr, '')
})

test('serve --cors --no-cache --dotfiles deny --quiet, and --max-age, set what they say', async (t) => {
  const dir = tempDir(t)
  writeFixture(dir, 'hello.txt', Buffer.from('hello\n'))
  writeFixture(dir, '.env', Buffer.from('SECRET=1\n'))
  const quiet = await startServe(t, dir, ['--cors', '--no-cache', '--dotfiles', 'deny', '--quiet'])
  const hello = await get(dir, `${quiet.base}hello.txt`)
  t.is(hello.body.toString(), 'hello\n')
  t.is(hello.headers['access-control-allow-origin'], '*')
  t.is(hello.headers['cache-control'], 'no-cache')
  t.is((await get(dir, `${quiet.base}.env`)).status, 403)

  const cached = await startServe(t, dir, ['--max-age', '600'])
  const answer = await get(dir, `${cached.base}hello.txt`)
  t.is(answer.headers['cache-control'], 'public, max-age=600')
  t.false('access-control-allow-origin' in answer.headers)
  t.is((await get(dir, `${cached.base}.env`)).status, 404)

  for (const { server } of [quiet, cached]) server.child.kill('SIGINT')
  const [quietEnd, cachedEnd] = await Promise.all([quiet.server.finished(), cached.server.finished()])
  t.is(quietEnd.code, 0)
  t.is(cachedEnd.code, 0)
  t.is(quietEnd.stdout.trim().split('\n').length, 1, `--quiet prints the URL only: ${quietEnd.stdout}`)
  t.regex(cachedEnd.stdout, /GET \/hello\.txt 200 6 B/)
})

test('serve --precompressed --ext html: a .br beside the file for clients that take it, and /about for about.html', async (t) => {
  const dir = tempDir(t)
  const script = Buffer.from('console.log("plain")\n')
  const brotli = zlib.brotliCompressSync(script)
  writeFixture(dir, 'app.js', script)
  writeFixture(dir, 'app.js.br', brotli)
  writeFixture(dir, 'about.html', Buffer.from('<h1>about</h1>\n'))
  const { server, base } = await startServe(t, dir, ['--precompressed', '--ext', 'html', '--quiet'])
  const compressed = await get(dir, `${base}app.js`, { 'Accept-Encoding': 'br' })
  t.is(compressed.status, 200)
  t.is(compressed.headers['content-encoding'], 'br')
  t.is(compressed.headers.vary, 'Accept-Encoding')
  t.deepEqual(compressed.body, brotli)
  const plain = await get(dir, `${base}app.js`, { 'Accept-Encoding': 'identity' })
  t.false('content-encoding' in plain.headers)
  t.deepEqual(plain.body, script)
  const about = await get(dir, `${base}about`)
  t.is(about.status, 200)
  t.is(about.body.toString(), '<h1>about</h1>\n')
  server.child.kill('SIGINT')
  t.is((await server.finished()).code, 0)
  const bad = await runCli(['serve', dir, '--ext', 'html,,htm'])
  t.is(bad.code, 2)
  t.regex(bad.stderr, /^zerocopy serve: option '--ext' must be extensions separated by commas/)
})

test('serve on SIGTERM stops accepting, finishes the response in flight, and exits 0', async (t) => {
  const dir = tempDir(t)
  // Far more than the loopback socket buffers hold: a client that does not read keeps it in flight.
  const data = crypto.randomBytes(48 * MiB)
  writeFixture(dir, 'big.bin', data)
  const { server, base, port } = await startServe(t, dir)

  const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
    const request = http.get(`${base}big.bin`, { agent: false }, resolve)
    request.on('error', reject)
    t.teardown(() => request.destroy())
  })
  t.is(response.statusCode, 200)
  // Not reading: the body stalls in the socket buffers.
  response.pause()

  server.child.kill('SIGTERM')
  await server.waitFor('stdout', /SIGTERM: stopping, 1 response in flight\n/)
  const connecting = await new Promise<string>((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    socket.once('connect', () => resolve('connected'))
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message))
    t.teardown(() => socket.destroy())
  })
  t.is(connecting, 'ECONNREFUSED')

  const received = new Promise<string>((resolve, reject) => {
    const hash = crypto.createHash('sha256')
    response.on('data', (chunk: Buffer) => hash.update(chunk))
    response.once('end', () => resolve(hash.digest('hex')))
    response.once('error', reject)
  })
  response.resume()
  t.is(await received, sha256(data))
  const { code, stdout } = await server.finished()
  t.is(code, 0)
  t.regex(stdout, new RegExp(String.raw`GET /big\.bin 200 ${data.length} B [\d.]+ ms zero-copy\n`))
})

test('serve with a missing directory or a port in use: one line on stderr, exit 1', async (t) => {
  const dir = tempDir(t)
  const missing = await runCli(['serve', path.join(dir, 'nope'), '--port', '0'])
  t.is(missing.code, 1)
  t.is(missing.stderr, `zerocopy serve: no such directory: ${path.join(dir, 'nope')}\n`)

  const blocker = net.createServer()
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve))
  t.teardown(() => blocker.close())
  const { port } = blocker.address() as net.AddressInfo
  const busy = await runCli(['serve', dir, '--port', String(port)])
  t.is(busy.code, 1)
  t.is(busy.stderr, `zerocopy serve: cannot listen on 127.0.0.1:${port}: the port is already in use (EADDRINUSE)\n`)
  t.is(busy.stdout, '')
})

test('send into receive moves a 64 MiB random file byte for byte, and the summary says zero-copy', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'random.bin', crypto.randomBytes(64 * MiB))
  const destination = path.join(dir, 'received.bin')
  const { receiver, address } = await startReceive(t, ['--out', destination])

  const sent = await runCli(['send', source, address])
  t.is(sent.code, 0, sent.stderr)
  t.regex(sent.stdout, new RegExp(`^sent 64\\.0 MiB in ${RATE}, zero-copy\\n$`))
  t.is(sent.stderr, '', 'off a terminal: no progress bar')

  const received = await receiver.finished()
  t.is(received.code, 0, received.stderr)
  t.regex(received.stdout, new RegExp(`^received 64\\.0 MiB in ${RATE}\\n$`))
  t.is(await fileHash(destination), await fileHash(source))
})

test('send --offset --length --json into receive on stdout: the range, and the summary as JSON', async (t) => {
  const dir = tempDir(t)
  const data = crypto.randomBytes(3 * MiB)
  const source = writeFixture(dir, 'data.bin', data)
  const { receiver, address } = await startReceive(t, [])

  const sent = await runCli(['send', source, address, '--offset', '1000', '--length', '2000000', '--json'])
  t.is(sent.code, 0, sent.stderr)
  const summary = JSON.parse(sent.stdout) as Record<string, unknown>
  t.like(summary, { command: 'send', bytes: 2_000_000, method: 'sendfile', zeroCopy: true })
  t.is(typeof summary.seconds, 'number')

  const received = await receiver.finished()
  t.is(received.code, 0, received.stderr)
  t.deepEqual(Buffer.concat(receiver.stdoutBytes), data.subarray(1000, 2_001_000))
  // stdout carries the data, so the summary goes to stderr.
  t.regex(received.stderr, /\nreceived 1\.9 MiB in /)
})

test('a failed send prints the error code and message on one line and exits 1', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'data.bin', Buffer.from('data'))
  const port = await closedPort()
  const refused = await runCli(['send', source, `127.0.0.1:${port}`])
  t.is(refused.code, 1)
  t.is(refused.stderr, `zerocopy send: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:${port}\n`)

  const missing = await runCli(['send', path.join(dir, 'nope.bin'), `127.0.0.1:${port}`])
  t.is(missing.code, 1)
  t.regex(missing.stderr, /^zerocopy send: ENOENT: no such file or directory, open '.*nope\.bin'\n$/)
})

test('copy makes an identical file, and --exclusive refuses an existing destination', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source.bin', crypto.randomBytes(8 * MiB + 3))
  const copy = path.join(dir, 'copy.bin')
  const copied = await runCli(['copy', source, copy])
  t.is(copied.code, 0, copied.stderr)
  t.is(copied.stderr, '')
  t.regex(copied.stdout, new RegExp(`^copied 8\\.0 MiB in ${RATE}, `))
  // copy_file_range is Linux's (and FreeBSD's); macOS copies files through a buffer.
  if (process.platform === 'linux') t.regex(copied.stdout, /, zero-copy\n$/)
  t.is(await fileHash(copy), await fileHash(source))

  const existing = writeFixture(dir, 'existing.bin', Buffer.from('keep me\n'))
  const refused = await runCli(['copy', source, existing, '--exclusive'])
  t.is(refused.code, 1)
  t.regex(refused.stderr, /^zerocopy copy: EEXIST: .*existing\.bin'\n$/)
  t.is(fs.readFileSync(existing, 'utf8'), 'keep me\n')

  const fresh = await runCli(['copy', source, path.join(dir, 'fresh.bin'), '--exclusive', '--json'])
  t.is(fresh.code, 0, fresh.stderr)
  t.like(JSON.parse(fresh.stdout), { command: 'copy', bytes: 8 * MiB + 3 })
})

/** `script` runs a command on a pseudo-terminal; its arguments differ between util-linux and the BSDs. */
function onPseudoTerminal(args: string[]): [string, string[]] | undefined {
  const quoted = [process.execPath, BIN, ...args].map((arg) => `'${arg.replace(/'/g, `'\\''`)}'`).join(' ')
  if (process.platform === 'linux') return ['script', ['-qfec', quoted, '/dev/null']]
  if (process.platform === 'darwin' || process.platform === 'freebsd') return ['script', ['-q', '/dev/null', process.execPath, BIN, ...args]]
  return undefined
}

const ptyTest = onPseudoTerminal([]) !== undefined && hasCommand('sh', ['-c', 'command -v script']) ? test : test.skip

ptyTest('a progress bar on a terminal; piped, only the summary line', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source.bin', crypto.randomBytes(16 * MiB))
  const [command, args] = onPseudoTerminal(['copy', source, path.join(dir, 'tty.bin')]) as [string, string[]]
  const { stdout: screen } = await run(command, args, { timeout: WAIT_MS })
  t.regex(screen, /█+ 100% \| 16\.0 MiB of 16\.0 MiB \| [\d.]+ [kMGT]?B\/s \| ETA /, screen)
  t.regex(screen, /copied 16\.0 MiB in /)

  const piped = await runCli(['copy', source, path.join(dir, 'piped.bin')])
  t.is(piped.code, 0)
  t.is(piped.stderr, '')
  t.regex(piped.stdout, new RegExp(`^copied 16\\.0 MiB in ${RATE}, [^\\n]+\\n$`))
})
