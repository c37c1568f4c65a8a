/**
 * A stranger's project: the packed tarballs installed into a fresh directory with no path back
 * to this repository, used through require, import and tsc, with and without the platform
 * package.
 */
import test, { type ExecutionContext } from 'ava'
import { execFile } from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)
const root = path.join(__dirname, '..')
const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }
const versionOf = (name: string) => lock.packages[`node_modules/${name}`].version

const NPM_QUIET = ['--no-audit', '--no-fund', '--loglevel=error']

async function pack(t: ExecutionContext, dir: string, into: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', into, ...NPM_QUIET], { cwd: dir })
  const [{ filename }] = JSON.parse(stdout) as Array<{ filename: string }>
  t.log(`packed ${filename}`)
  return path.join(into, filename)
}

/** Packs the main package and, from a scratch copy of npm/linux-x64-gnu, the platform package. */
async function packAll(t: ExecutionContext): Promise<{ main: string; platform: string; work: string }> {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-pack-'))
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }))
  const main = await pack(t, root, work)
  const platformDir = path.join(work, 'linux-x64-gnu')
  fs.cpSync(path.join(root, 'npm', 'linux-x64-gnu'), platformDir, { recursive: true })
  fs.copyFileSync(path.join(root, 'sendfile.linux-x64-gnu.node'), path.join(platformDir, 'sendfile.linux-x64-gnu.node'))
  const platform = await pack(t, platformDir, work)
  return { main, platform, work }
}

async function consumerProject(work: string, name: string, tarballs: string[], extra: string[] = []): Promise<string> {
  const dir = path.join(work, name)
  fs.mkdirSync(dir)
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name, version: '1.0.0', private: true }))
  await run('npm', ['install', '--prefer-offline', ...NPM_QUIET, ...tarballs, ...extra], { cwd: dir, timeout: 180_000 })
  return dir
}

/** A real transfer through the installed package: a file over TCP and a file copy, with hashes. */
const TRANSFER_SCRIPT = `
const { sendFile, copyFile, isNative, transferChannel } = require('@zerocopy/sendfile')
const crypto = require('node:crypto'), fs = require('node:fs'), net = require('node:net'), os = require('node:os'), path = require('node:path')
const hash = (data) => crypto.createHash('sha256').update(data).digest('hex')
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'consumer-'))
const file = path.join(dir, 'data.bin')
fs.writeFileSync(file, crypto.randomBytes(3 * 1024 * 1024 + 5))
const methods = []
transferChannel.subscribe((report) => methods.push(report.method))
const server = net.createServer((socket) => {
  const chunks = []
  socket.on('data', (chunk) => chunks.push(chunk)).on('end', async () => {
    server.close()
    const copied = await copyFile(file, path.join(dir, 'copy.bin'))
    const result = { isNative, received: hash(Buffer.concat(chunks)) === hash(fs.readFileSync(file)), copied: copied === fs.statSync(file).size && hash(fs.readFileSync(path.join(dir, 'copy.bin'))) === hash(fs.readFileSync(file)), methods }
    fs.rmSync(dir, { recursive: true })
    console.log(JSON.stringify(result))
  })
})
server.listen(0, '127.0.0.1', () => {
  const socket = net.connect(server.address().port, '127.0.0.1', async () => {
    await sendFile(socket, file)
    socket.end()
  })
})
`

const ESM_SCRIPT = `
import * as esm from '@zerocopy/sendfile'
import esmDefault, { sendFile, sendfile, sendfileSync, copyFile, copyFileSync, socketFd, transferChannel, isNative, serveFile, createStaticHandler } from '@zerocopy/sendfile'
import { createRequire } from 'node:module'
const cjs = createRequire(import.meta.url)('@zerocopy/sendfile')
const missing = Object.keys(cjs).filter((name) => !(name in esm))
console.log(JSON.stringify({ missing, functions: [sendFile, sendfile, sendfileSync, copyFile, copyFileSync, socketFd, serveFile, createStaticHandler].every((f) => typeof f === 'function'), channel: typeof transferChannel.subscribe, isNative, sameAsDefault: esmDefault.sendFile === sendFile }))
`

const TYPESCRIPT_CONSUMER = `
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as http from 'node:http'
import { copyFile, copyFileSync, createStaticHandler, isNative, nativeError, sendFile, sendfile, sendfileSync, serveFile, socketFd, transferChannel, type CopyFileOptions, type SendFileOptions, type ServeFileOptions, type StaticOptions, type SystemError, type TransferReport } from '@zerocopy/sendfile'

export async function useEverything(socket: net.Socket, handle: fs.promises.FileHandle): Promise<number> {
  const options: SendFileOptions = { offset: 0, length: 10, signal: new AbortController().signal, onProgress: (sent: number, total: number) => void (sent + total), fallback: true }
  const sent: number = await sendFile(socket, handle, options)
  const more: number = await sendFile(socketFd(socket), new URL('file:///etc/hostname'))
  const low: number = sendfileSync(socketFd(socket), handle.fd, null, 0) + (await sendfile(1, handle.fd))
  const copyOptions: CopyFileOptions = { offset: 1, length: 2, destinationOffset: 3, mode: fs.constants.COPYFILE_EXCL }
  const copied: number = (await copyFile('a', handle, copyOptions)) + copyFileSync('a', 'b', { mode: 0 })
  transferChannel.subscribe((message) => {
    const report = message as TransferReport
    const method: 'sendfile' | 'copy_file_range' | 'read_write' | 'stream' | 'none' = report.method
    void method
  })
  try {
    sendfileSync(-1, 0)
  } catch (error) {
    const systemError = error as SystemError
    void systemError.errno
  }
  void nativeError
  const serveOptions: ServeFileOptions = { maxAge: 60, immutable: true }
  const staticOptions: StaticOptions = { ...serveOptions, index: 'index.html', dotfiles: 'ignore' }
  const handler = createStaticHandler('.', staticOptions)
  http.createServer(async (req, res) => (req.url === '/one' ? await serveFile(req, res, 'one.txt', serveOptions) : handler(req, res, () => res.end())))
  return sent + more + low + copied + (isNative ? 1 : 0)
}
`

test('the packed package installs in a fresh project and works through require, import and tsc, zero-copy', async (t) => {
  const { main, platform, work } = await packAll(t)
  const dir = await consumerProject(
    work,
    'consumer-native',
    [main, platform],
    [`typescript@${versionOf('typescript')}`, `@types/node@${versionOf('@types/node')}`],
  )
  t.false(fs.readFileSync(path.join(dir, 'package.json'), 'utf8').includes(root), 'no path back to the repository')
  t.false(fs.lstatSync(path.join(dir, 'node_modules', '@zerocopy', 'sendfile')).isSymbolicLink())

  fs.writeFileSync(path.join(dir, 'transfer.cjs'), TRANSFER_SCRIPT)
  const cjs = JSON.parse((await run(process.execPath, ['transfer.cjs'], { cwd: dir, timeout: 30_000 })).stdout)
  t.deepEqual(cjs, { isNative: true, received: true, copied: true, methods: ['sendfile', 'copy_file_range'] })

  fs.writeFileSync(path.join(dir, 'esm.mjs'), ESM_SCRIPT)
  const esm = JSON.parse((await run(process.execPath, ['esm.mjs'], { cwd: dir, timeout: 30_000 })).stdout)
  t.deepEqual(esm, { missing: [], functions: true, channel: 'function', isNative: true, sameAsDefault: true })

  // consumer.ts resolves the package's "require" types (index.d.ts), consumer.mts its "import" types (index.d.mts).
  fs.writeFileSync(path.join(dir, 'consumer.ts'), TYPESCRIPT_CONSUMER)
  fs.writeFileSync(path.join(dir, 'consumer.mts'), TYPESCRIPT_CONSUMER)
  const tsc = path.join(dir, 'node_modules', 'typescript', 'bin', 'tsc')
  // Every ts block of the README, as a CommonJS (.ts) and an ES module (.mts), as a user would copy it.
  const blocks = [...fs.readFileSync(path.join(root, 'README.md'), 'utf8').matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((match) => match[1])
  t.true(blocks.length >= 8, 'the README has its examples')
  const readmeFiles = blocks.flatMap((block, index) =>
    ['ts', 'mts'].map((extension) => {
      const file = `readme-${index + 1}.${extension}`
      fs.writeFileSync(path.join(dir, file), block)
      return file
    }),
  )
  for (const files of [['consumer.ts', 'consumer.mts'], readmeFiles]) {
    const args = ['--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', '--target', 'es2022', ...files]
    const compiled = await run(process.execPath, [tsc, ...args], { cwd: dir, timeout: 120_000 }).then(
      () => '',
      (error: { stdout?: string }) => error.stdout ?? String(error),
    )
    t.is(compiled, '', `tsc ${args.join(' ')}`)
  }

  // The README's servers, run as written (only the port is ours): clients that reset mid-body
  // must not bring them down, and they must keep answering.
  const servers = blocks.map((block, index) => ({ block, file: `readme-${index + 1}.ts` })).filter(({ block }) => block.includes('.listen(8080)'))
  t.true(servers.length >= 3, 'the README has its server examples')
  const emitted = path.join(dir, 'emitted')
  const emit = [
    '--strict',
    '--module',
    'nodenext',
    '--moduleResolution',
    'nodenext',
    '--types',
    'node',
    '--target',
    'es2022',
    '--outDir',
    emitted,
    ...servers.map(({ file }) => file),
  ]
  await run(process.execPath, [tsc, ...emit], { cwd: dir, timeout: 120_000 })
  fs.writeFileSync(path.join(dir, 'song.txt'), Buffer.alloc(4 * 1024 * 1024, 0x61))
  fs.writeFileSync(path.join(dir, 'video.mp4'), Buffer.alloc(16 * 1024 * 1024, 0x62))
  fs.mkdirSync(path.join(dir, 'public'))
  fs.writeFileSync(path.join(dir, 'public', 'big.bin'), Buffer.alloc(16 * 1024 * 1024, 0x63))
  fs.writeFileSync(path.join(dir, 'port-0.cjs'), PORT_ZERO_PRELOAD)
  for (const { block, file } of servers) {
    const http = block.includes("from 'node:http'")
    await t.notThrowsAsync(
      survivesResets(dir, path.join(emitted, file.replace(/\.ts$/, '.js')), http ? 'GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n' : undefined),
      file,
    )
  }
})

/** Preloaded into a README server: its listen(8080) takes any free port, and says which. */
const PORT_ZERO_PRELOAD = `
const net = require('node:net')
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (port, ...rest) {
  this.once('listening', () => process.stdout.write(JSON.stringify({ port: this.address().port }) + '\\n'))
  return listen.call(this, port === 8080 ? 0 : port, ...rest)
}
`

/**
 * Starts a README server, resets 20 clients mid-body (a peer that vanishes, as on a flaky
 * network), then checks the process is alive and a full response still arrives.
 */
async function survivesResets(cwd: string, script: string, request: string | undefined): Promise<void> {
  const { spawn } = await import('node:child_process')
  const net = await import('node:net')
  const server = spawn(process.execPath, ['--require', './port-0.cjs', script], { cwd, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  server.stderr.on('data', (chunk: Buffer) => (stderr += chunk))
  const exited = new Promise<number | null>((resolve) => server.once('exit', (code) => resolve(code)))
  try {
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no port from ${script}: ${stderr}`)), 30_000)
      server.stdout.once('data', (chunk: Buffer) => {
        clearTimeout(timer)
        resolve((JSON.parse(chunk.toString().split('\n')[0]) as { port: number }).port)
      })
    })
    const connect = () =>
      net.connect(port, '127.0.0.1').setTimeout(20_000, function (this: import('node:net').Socket) {
        this.destroy(new Error('timed out'))
      })
    for (let client = 0; client < 20; client++) {
      await new Promise<void>((resolve, reject) => {
        const socket = connect()
        if (request !== undefined) socket.write(request)
        socket.once('data', () => {
          socket.resetAndDestroy()
          resolve()
        })
        socket.once('error', reject)
      })
    }
    // Still there, and still answering in full.
    const received = await new Promise<number>((resolve, reject) => {
      const socket = connect()
      let bytes = 0
      socket.on('data', (chunk: Buffer) => (bytes += chunk.length))
      // Not end(): a half-closed request would end the response too.
      if (request !== undefined) socket.write(request.replace('HTTP/1.1\r\n', 'HTTP/1.1\r\nConnection: close\r\n'))
      socket.once('end', () => resolve(bytes))
      socket.once('error', reject)
    })
    if (received < 1024 * 1024) throw new Error(`only ${received} bytes after the resets; stderr: ${stderr}`)
    if (server.exitCode !== null) throw new Error(`the server exited (${server.exitCode}): ${stderr}`)
  } finally {
    server.kill()
    await exited
  }
}

test('without the platform package the installed package still works through the fallback and says it is not zero-copy', async (t) => {
  const { main, work } = await packAll(t)
  const dir = await consumerProject(work, 'consumer-fallback', [main])
  fs.writeFileSync(path.join(dir, 'transfer.cjs'), TRANSFER_SCRIPT)
  const { stdout, stderr } = await run(process.execPath, ['transfer.cjs'], { cwd: dir, timeout: 30_000 })
  t.deepEqual(JSON.parse(stdout), { isNative: false, received: true, copied: true, methods: ['stream', 'stream'] })
  const warnings = stderr.split('\n').filter((line) => line.includes('ZeroCopyWarning'))
  t.is(warnings.length, 1, stderr)
  // nativeError names the package that carries the binary and the command that installs it.
  const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }
  const message = (await run(process.execPath, ['-p', "require('@zerocopy/sendfile').nativeError.message"], { cwd: dir, timeout: 30_000 })).stdout
  t.true(new RegExp(`npm install @zerocopy/sendfile-${process.platform}-${process.arch}(-gnu|-musl)?@${version.replace(/\./g, '\\.')}`).test(message), message)
})

test('the installed package has a zerocopy command that npx runs: --version and a zero-copy copy', async (t) => {
  const { main, platform, work } = await packAll(t)
  const dir = await consumerProject(work, 'consumer-cli', [main, platform])
  // --no: never fetch some other package called zerocopy from the registry, the command must be this one;
  // `--` then keeps npx from taking the command's own --version for its own.
  const npx = (args: string[]) => run('npx', ['--no', '--', 'zerocopy', ...args], { cwd: dir, timeout: 60_000 })
  const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }
  t.is((await npx(['--version'])).stdout, `${version}\n`)

  const song = Buffer.alloc(3 * 1024 * 1024 + 5, 'twinkle twinkle little star\n')
  fs.writeFileSync(path.join(dir, 'song.txt'), song)
  const { stdout, stderr } = await npx(['copy', 'song.txt', 'copy.txt'])
  t.regex(stdout, /^copied 3\.0 MiB in [\d.]+ s, .+, zero-copy\n$/)
  t.is(stderr, '')
  t.true(fs.readFileSync(path.join(dir, 'copy.txt')).equals(song))
})
