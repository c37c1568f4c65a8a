// The portable part of the test suite, for the Node of another platform: low-level calls, sendFile
// over TCP and Unix sockets, copyFile, the stream fallback and an HTTP range request, each checked
// by the sha256 of what arrived, by file positions and by error codes.
//
// Plain ESM with no dependencies because it runs where ava and tsx would be far too slow (arm64
// Node under qemu) or absent (a musl Node). `scripts/test-platforms.sh` copies it into a clean
// project that installed the packed packages, where '@zerocopy/sendfile' is the installed
// package; run in this repository, the import resolves to the repository itself (a package may
// import its own name), so `node scripts/platform-smoke.mjs` tests the local build.
//
//   node platform-smoke.mjs [--binary path/to/sendfile.<platform>.node]
//
// --binary: fail unless that very file is the native binding the package loaded. To try a
// binary of npm/ in this repository with another platform's Node, point napi-rs's loader at it:
//
//   NAPI_RS_NATIVE_LIBRARY_PATH=$PWD/npm/linux-arm64-musl/sendfile.linux-arm64-musl.node \
//     scripts/platform-node.sh linux-arm64-musl scripts/platform-smoke.mjs \
//     --binary npm/linux-arm64-musl/sendfile.linux-arm64-musl.node
//
// Prints one line per test and ends with `N passed, M failed`; exits non-zero on a failure.
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import { copyFile, copyFileSync, isNative, nativeError, sendFile, sendfile, sendfileSync, serveFile, socketFd, transferChannel } from '@zerocopy/sendfile'

// Every wait is bounded: under qemu a test takes a few seconds, natively milliseconds.
const TEST_TIMEOUT_MS = 60_000
// Large enough to span several of the binding's 2 MiB chunks and to overfill a socket buffer,
// odd so that no boundary lines up by luck.
const FILE_SIZE = 3 * 1024 * 1024 + 5
const KiB = 1024

const expectedBinary = argValue('--binary')
const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-smoke-'))
const sourcePath = path.join(workDir, 'source.bin')
const content = patternBytes(FILE_SIZE)
fs.writeFileSync(sourcePath, content)

/** `--name value` from the command line, or undefined. */
function argValue(name) {
  const at = process.argv.indexOf(name)
  return at === -1 ? undefined : process.argv[at + 1]
}

/** The same bytes on every run (xorshift32 from a fixed seed), so a failure can be replayed. */
function patternBytes(size) {
  const words = new Uint32Array(Math.ceil(size / 4))
  let state = 0x9e3779b9
  for (let i = 0; i < words.length; i++) {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    words[i] = state >>> 0
  }
  return Buffer.from(words.buffer, 0, size)
}

const sha256 = (bytes) => crypto.createHash('sha256').update(bytes).digest('hex')

function check(condition, message) {
  if (!condition) throw new Error(message)
}

function checkSameBytes(actual, expected, what) {
  check(actual.length === expected.length, `${what}: ${actual.length} bytes, expected ${expected.length}`)
  check(sha256(actual) === sha256(expected), `${what}: sha256 differs from the source's`)
}

/** Runs `operation`; checks that it throws an error whose properties include `expected`. */
async function checkThrows(operation, expected, what) {
  let thrown
  try {
    await operation()
  } catch (error) {
    thrown = error
  }
  check(thrown !== undefined, `${what}: did not throw`)
  for (const [key, value] of Object.entries(expected)) {
    check(thrown[key] === value, `${what}: ${key} is ${String(thrown[key])}, expected ${String(value)} (${thrown.message})`)
  }
}

function withTimeout(promise, ms, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The reports transferChannel publishes while `operation` runs. */
async function reportsDuring(operation) {
  const reports = []
  const listener = (report) => reports.push(report)
  transferChannel.subscribe(listener)
  try {
    return { result: await operation(), reports }
  } finally {
    transferChannel.unsubscribe(listener)
  }
}

/**
 * A connected pair on loopback TCP or a Unix socket: `sender` is the client, `received` resolves
 * with everything the server side read until the sender ended. `cleanup` collects what to close.
 */
async function socketPair(kind, cleanup, { pauseReceiver = false } = {}) {
  const server = net.createServer()
  cleanup.push(() => server.close())
  let resolveReceived
  let rejectReceived
  const received = new Promise((resolve, reject) => {
    resolveReceived = resolve
    rejectReceived = reject
  })
  const accepted = new Promise((resolve) => {
    server.once('connection', (peer) => {
      cleanup.push(() => peer.destroy())
      if (pauseReceiver) peer.pause()
      const chunks = []
      peer.on('data', (chunk) => chunks.push(chunk))
      peer.on('end', () => resolveReceived(Buffer.concat(chunks)))
      peer.on('error', rejectReceived)
      resolve(peer)
    })
  })
  const address = kind === 'unix' ? path.join(workDir, `socket-${cleanup.length}`) : { port: 0, host: '127.0.0.1' }
  await new Promise((resolve, reject) => server.once('error', reject).listen(address, resolve))
  const target = kind === 'unix' ? address : { port: server.address().port, host: '127.0.0.1' }
  const sender = net.connect(target)
  cleanup.push(() => sender.destroy())
  await new Promise((resolve, reject) => sender.once('error', reject).once('connect', resolve))
  const receiver = await accepted
  return { sender, receiver, received }
}

/** A file in the work directory opened for writing, closed by cleanup. */
function openScratch(name, cleanup) {
  const file = path.join(workDir, name)
  const fd = fs.openSync(file, 'w+')
  cleanup.push(() => fs.closeSync(fd))
  return { file, fd }
}

function openSource(cleanup) {
  const fd = fs.openSync(sourcePath, 'r')
  cleanup.push(() => fs.closeSync(fd))
  return fd
}

/** Reads `length` bytes at the fd's file position (advancing it), to see where the position is. */
function readAtPosition(fd, length) {
  const buffer = Buffer.alloc(length)
  return buffer.subarray(0, fs.readSync(fd, buffer, 0, length, null))
}

const tests = []
const test = (name, body) => tests.push({ name, body })

test('the package loaded its native binding, and it is the binary under test', async () => {
  check(isNative === true, `isNative is ${isNative}: ${nativeError instanceof Error ? nativeError.message : String(nativeError)}`)
  if (expectedBinary === undefined) return
  const wanted = fs.realpathSync(expectedBinary)
  const loaded = process.report.getReport().sharedObjects.filter((file) => file.endsWith('.node'))
  check(
    loaded.some((file) => fs.existsSync(file) && fs.realpathSync(file) === wanted),
    `loaded ${loaded.join(', ') || 'no .node file'}, expected ${wanted}`,
  )
})

test('sendfileSync with an offset copies that range to a file and leaves the file position alone', async (cleanup) => {
  const input = openSource(cleanup)
  const out = openScratch('range.bin', cleanup)
  const sent = sendfileSync(out.fd, input, 100, 5000)
  check(sent === 5000, `sent ${sent}, expected 5000`)
  checkSameBytes(fs.readFileSync(out.file), content.subarray(100, 5100), 'destination')
  checkSameBytes(readAtPosition(input, 16), content.subarray(0, 16), 'bytes at the unchanged file position')
})

test('sendfileSync with a null offset reads from the file position and advances it', async (cleanup) => {
  const input = openSource(cleanup)
  const out = openScratch('position.bin', cleanup)
  readAtPosition(input, 1000)
  const sent = sendfileSync(out.fd, input, null, 4096)
  check(sent === 4096, `sent ${sent}, expected 4096`)
  checkSameBytes(fs.readFileSync(out.file), content.subarray(1000, 5096), 'destination')
  checkSameBytes(readAtPosition(input, 16), content.subarray(5096, 5112), 'bytes at the advanced file position')
})

test('sendfile and sendfileSync report kernel and argument errors in the shape of Node errors', async (cleanup) => {
  const input = openSource(cleanup)
  // sendfile(2): EBADF when out_fd is not open for writing.
  const readOnly = openSource(cleanup)
  const ebadf = { code: 'EBADF', errno: -os.constants.errno.EBADF, syscall: 'sendfile' }
  await checkThrows(() => sendfileSync(readOnly, input, 0, 10), ebadf, 'sendfileSync to a read-only fd')
  await checkThrows(() => sendfile(readOnly, input, 0, 10), { ...ebadf, bytesSent: 0 }, 'sendfile to a read-only fd')
  await checkThrows(() => sendfileSync('1', input), { code: 'ERR_INVALID_ARG_TYPE' }, 'a string fd')
  await checkThrows(() => sendfileSync(readOnly, input, -1), { code: 'ERR_OUT_OF_RANGE' }, 'a negative offset')
})

test('sendfileSync on a full non-blocking Unix socket returns short counts, then throws EAGAIN', async (cleanup) => {
  const { sender } = await socketPair('unix', cleanup, { pauseReceiver: true })
  const input = openSource(cleanup)
  let offset = 0
  let thrown
  // A Unix socket buffers a few hundred KiB at most, so the loop ends long before the file does.
  for (let call = 0; call < 10_000 && thrown === undefined && offset < FILE_SIZE; call++) {
    try {
      offset += sendfileSync(socketFd(sender), input, offset)
    } catch (error) {
      thrown = error
    }
  }
  check(thrown !== undefined, `no EAGAIN after ${offset} bytes`)
  check(thrown.code === 'EAGAIN', `threw ${thrown.code} (${thrown.message}), expected EAGAIN`)
  check(offset > 0 && offset < FILE_SIZE, `${offset} bytes went out before EAGAIN`)
})

test('sendfile sends a range over TCP, and the peer receives exactly those bytes', async (cleanup) => {
  const { sender, received } = await socketPair('tcp', cleanup)
  const input = openSource(cleanup)
  const length = 2 * 1024 * KiB + 7
  const sent = await sendfile(socketFd(sender), input, 12_345, length)
  sender.end()
  check(sent === length, `sent ${sent}, expected ${length}`)
  checkSameBytes(await received, content.subarray(12_345, 12_345 + length), 'peer')
})

test('sendFile over TCP: the file in order with the writes around it, zero-copy', async (cleanup) => {
  const { sender, received } = await socketPair('tcp', cleanup)
  sender.write('HELLO\n')
  const { result: sent, reports } = await reportsDuring(() => sendFile(sender, sourcePath))
  sender.end('BYE\n')
  check(sent === FILE_SIZE, `sent ${sent}, expected ${FILE_SIZE}`)
  checkSameBytes(await received, Buffer.concat([Buffer.from('HELLO\n'), content, Buffer.from('BYE\n')]), 'peer')
  check(reports.length === 1 && reports[0].method === 'sendfile' && reports[0].zeroCopy, `reports: ${JSON.stringify(reports.map((r) => r.method))}`)
})

test('sendFile over a Unix socket sends offset and length from a FileHandle', async (cleanup) => {
  const { sender, received } = await socketPair('unix', cleanup)
  const handle = await fs.promises.open(sourcePath)
  cleanup.push(() => handle.close())
  const sent = await sendFile(sender, handle, { offset: 777, length: 1024 * KiB })
  sender.end()
  check(sent === 1024 * KiB, `sent ${sent}, expected ${1024 * KiB}`)
  checkSameBytes(await received, content.subarray(777, 777 + 1024 * KiB), 'peer')
})

test('copyFile copies a file in the kernel, and COPYFILE_EXCL refuses an existing destination', async () => {
  const destination = path.join(workDir, 'copy.bin')
  const { result: copied, reports } = await reportsDuring(() => copyFile(sourcePath, destination))
  check(copied === FILE_SIZE, `copied ${copied}, expected ${FILE_SIZE}`)
  checkSameBytes(fs.readFileSync(destination), content, 'copy')
  check(reports.length === 1 && reports[0].method === 'copy_file_range' && reports[0].zeroCopy, `reports: ${JSON.stringify(reports.map((r) => r.method))}`)
  await checkThrows(() => copyFileSync(sourcePath, destination, { mode: fs.constants.COPYFILE_EXCL }), { code: 'EEXIST' }, 'COPYFILE_EXCL')
})

test('copyFile writes a range at destinationOffset into an fd and moves neither position', async (cleanup) => {
  const input = openSource(cleanup)
  const out = openScratch('range-copy.bin', cleanup)
  fs.writeSync(out.fd, Buffer.alloc(64, 0x2e), 0, 64, 0)
  const copied = await copyFile(input, out.fd, { offset: 10, length: 100_000, destinationOffset: 50 })
  check(copied === 100_000, `copied ${copied}, expected 100000`)
  checkSameBytes(fs.readFileSync(out.file), Buffer.concat([Buffer.alloc(50, 0x2e), content.subarray(10, 100_010)]), 'destination')
  checkSameBytes(readAtPosition(input, 16), content.subarray(0, 16), 'bytes at the source position')
})

test('a character device goes through the stream fallback; fallback: false refuses it', async (cleanup) => {
  const { sender, received } = await socketPair('tcp', cleanup)
  const { result: sent, reports } = await reportsDuring(() => sendFile(sender, '/dev/zero', { length: 300 * KiB }))
  check(sent === 300 * KiB, `sent ${sent}, expected ${300 * KiB}`)
  check(reports.length === 1 && reports[0].method === 'stream' && !reports[0].zeroCopy, `reports: ${JSON.stringify(reports.map((r) => r.method))}`)
  await checkThrows(() => sendFile(sender, '/dev/zero', { length: 10, fallback: false }), { code: 'ERR_SENDFILE_UNSUPPORTED' }, 'fallback: false')
  sender.end()
  checkSameBytes(await received, Buffer.alloc(300 * KiB), 'peer')
})

test('serveFile answers a Range request with 206 and exactly those bytes', async (cleanup) => {
  const server = http.createServer((req, res) => {
    serveFile(req, res, sourcePath).catch((error) => res.destroy(error))
  })
  cleanup.push(() => server.closeAllConnections())
  cleanup.push(() => server.close())
  await new Promise((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { statusCode, headers, body } = await new Promise((resolve, reject) => {
    const request = http.get({ host: '127.0.0.1', port: server.address().port, path: '/', agent: false, headers: { range: 'bytes=1000-200999' } }, (res) => {
      const chunks = []
      res.on('data', (chunk) => chunks.push(chunk))
      res.on('end', () => resolve({ statusCode: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }))
      res.on('error', reject)
    })
    request.on('error', reject)
  })
  check(statusCode === 206, `status ${statusCode}, expected 206`)
  check(headers['content-range'] === `bytes 1000-200999/${FILE_SIZE}`, `content-range ${headers['content-range']}`)
  check(headers['content-length'] === '200000', `content-length ${headers['content-length']}`)
  checkSameBytes(body, content.subarray(1000, 201_000), 'body')
})

let passed = 0
let failed = 0
console.log(`# ${process.platform}-${process.arch}, Node ${process.version}`)
for (const { name, body } of tests) {
  const cleanup = []
  try {
    await withTimeout(body(cleanup), TEST_TIMEOUT_MS, name)
    passed++
    console.log(`ok - ${name}`)
  } catch (error) {
    failed++
    console.log(`not ok - ${name}\n  ${String(error?.stack ? error.stack : error).replaceAll('\n', '\n  ')}`)
  } finally {
    // Newest first: sockets before their servers, fds after what used them.
    for (const close of cleanup.reverse()) {
      try {
        await close()
      } catch {
        // Already closed by the test; nothing left to release.
      }
    }
  }
}
fs.rmSync(workDir, { recursive: true, force: true })
console.log(`${passed} passed, ${failed} failed`)
process.exitCode = failed === 0 ? 0 : 1
