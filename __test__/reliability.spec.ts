/**
 * Faults and bad input: nothing may crash the process, hang a promise, leak a descriptor or
 * send a byte to the wrong place. Serial, because the fd and listener counts are process-wide.
 */
import test from 'ava'
import fc from 'fast-check'
import { execFile } from 'node:child_process'
import { getEventListeners } from 'node:events'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import * as util from 'node:util'

import { copyFile, copyFileSync, sendFile, sendfile, sendfileSync, socketFd } from '..'
import { collect, collectHash, fdsSettle, linuxTest, openFdCount, pattern, sha256, tempDir, tick, unixPair, writeFixture } from './helpers'

const MiB = 1024 * 1024

const unexpected: unknown[] = []
process.on('uncaughtException', (error) => unexpected.push(error))
process.on('unhandledRejection', (error) => unexpected.push(error))

/** Resolves with whatever a promise settled to, so a test can inspect rejections without try/catch. */
function settle<T>(promise: Promise<T>): Promise<{ value?: T; error?: NodeJS.ErrnoException }> {
  return promise.then(
    (value) => ({ value }),
    (error: NodeJS.ErrnoException) => ({ error }),
  )
}

async function listen(server: net.Server, options: net.ListenOptions): Promise<void> {
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options, () => resolve()))
}

linuxTest.serial('1000 transfers whose peers reset mid-transfer all reject with ECONNRESET or EPIPE, and every fd is released', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'big.bin', pattern(64 * MiB, 31))
  const baseline = openFdCount()
  const outcomes: Array<{ value?: number; error?: NodeJS.ErrnoException }> = []
  const server = net.createServer((socket) => {
    socket.on('error', () => {}) // a real server listens; the reset may reach the reader first
    outcomes.push({})
    const slot = outcomes.length - 1
    settle(sendFile(socket, file)).then((outcome) => (outcomes[slot] = outcome))
  })
  await listen(server, { host: '127.0.0.1', port: 0, backlog: 1024 })
  const { port } = server.address() as net.AddressInfo
  for (let batch = 0; batch < 10; batch++) {
    await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise<void>((resolve) => {
            const client = net.connect(port, '127.0.0.1')
            client.on('error', () => {})
            // The first bytes prove the transfer is under way; then the peer drops with an RST.
            client.once('data', () => {
              client.resetAndDestroy()
              resolve()
            })
          }),
      ),
    )
  }
  while (outcomes.length < 1000 || outcomes.some((outcome) => outcome.value === undefined && outcome.error === undefined)) await tick(20)
  server.close()
  const codes = new Set(outcomes.map((outcome) => outcome.error?.code ?? `resolved ${outcome.value}`))
  t.deepEqual(
    [...codes].filter((code) => code !== 'ECONNRESET' && code !== 'EPIPE'),
    [],
    `codes seen: ${[...codes]}`,
  )
  t.true((await fdsSettle(baseline)) <= baseline, 'no descriptor leaked')
  t.deepEqual(unexpected, [])
})

test.serial('a socket destroyed mid-transfer sends nothing to the file that reuses its fd number', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source', pattern(32 * MiB, 37))
  const { sender, receiver } = await unixPair(t, dir) // the receiver is paused: the transfer stalls
  const fd = socketFd(sender)
  const transfer = settle(sendFile(sender, source))
  await tick(50)
  sender.destroy()
  const reused = fs.openSync(path.join(dir, 'victim'), 'w')
  t.teardown(() => fs.closeSync(reused))
  t.is(reused, fd, 'the new file got the socket fd number')
  const { error } = await transfer
  t.is(error?.code, 'ERR_STREAM_DESTROYED')
  // The peer drains whatever was buffered; the native side must have stopped for good.
  await collect(receiver).catch(() => Buffer.alloc(0))
  await tick(100)
  t.is(fs.fstatSync(reused).size, 0)
  t.deepEqual(unexpected, [])
})

test.serial('a source truncated mid-transfer settles with a short count or a clear error', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'shrinking', pattern(32 * MiB, 41))
  const { sender, receiver } = await unixPair(t, dir)
  const transfer = settle(sendFile(sender, file))
  await tick(50)
  fs.truncateSync(file, 1 * MiB)
  const received = collectHash(receiver)
  const { value, error } = await transfer
  sender.end()
  const { bytes } = await received
  if (error) t.truthy(error.code, `rejected with ${error.code}`)
  else t.is(value, bytes, 'the count is what the peer received')
  t.true(bytes <= 32 * MiB)
})

test.serial('a source that grows mid-transfer sends exactly the requested range', async (t) => {
  const dir = tempDir(t)
  const original = pattern(16 * MiB, 43)
  const file = writeFixture(dir, 'growing', original)
  for (const options of [{}, { length: 10 * MiB }]) {
    const { sender, receiver } = await unixPair(t, dir)
    const transfer = sendFile(sender, file, options)
    await tick(20)
    fs.appendFileSync(file, pattern(4 * MiB, 47))
    const received = collectHash(receiver)
    const expected = original.subarray(0, options.length ?? original.length)
    t.is(await transfer, expected.length)
    sender.end()
    t.is((await received).sha256, sha256(expected))
    fs.truncateSync(file, original.length)
  }
})

test.serial('a FileHandle closed mid-transfer never yields bytes of another file; a closed one is EBADF', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(16 * MiB, 53)
  const other = pattern(16 * MiB, 59)
  const source = writeFixture(dir, 'source', contents)
  const otherFile = writeFixture(dir, 'other', other)

  const closed = await fs.promises.open(source)
  await closed.close()
  const { sender: idle } = await unixPair(t, dir)
  const { error: closedError } = await settle(sendFile(idle, closed))
  t.is(closedError?.code, 'EBADF')

  const { sender, receiver } = await unixPair(t, dir)
  const handle = await fs.promises.open(source)
  const fd = handle.fd
  const transfer = settle(sendFile(sender, handle))
  await tick(50)
  await handle.close()
  const reused = fs.openSync(otherFile, 'r')
  t.teardown(() => fs.closeSync(reused))
  t.is(reused, fd)
  const received = collect(receiver)
  const { value, error } = await transfer
  sender.end()
  const bytes = await received
  t.true(bytes.equals(contents.subarray(0, bytes.length)), 'only bytes of the original file')
  if (error === undefined) t.is(value, bytes.length)
  else t.truthy(error.code)
})

linuxTest.serial('an abort storm: 1000 transfers aborted at random moments all reject with AbortError, fds and listeners back to baseline', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'storm.bin', pattern(4 * MiB, 61))
  const baseline = openFdCount()
  const server = net.createServer({ pauseOnConnect: true })
  const peers: net.Socket[] = []
  server.on('connection', (socket) => peers.push(socket))
  await listen(server, { path: path.join(dir, 'storm.sock'), backlog: 2048 })
  const senders: net.Socket[] = []
  for (let batch = 0; batch < 10; batch++) {
    senders.push(
      ...(await Promise.all(
        Array.from(
          { length: 100 },
          () =>
            new Promise<net.Socket>((resolve, reject) => {
              const socket = net.connect(path.join(dir, 'storm.sock'), () => resolve(socket)).once('error', reject)
            }),
        ),
      )),
    )
  }
  let seed = 7
  const random = () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32
  const signals: AbortSignal[] = []
  const results = senders.map((socket, index) => {
    const controller = new AbortController()
    signals.push(controller.signal)
    // Some abort before the call, some while queued or opening, most while stalled.
    if (index % 10 === 0) controller.abort()
    else setTimeout(() => controller.abort(), Math.floor(random() * 60))
    return settle(sendFile(socket, file, { signal: controller.signal }))
  })
  const outcomes = await Promise.all(results)
  const names = new Set(outcomes.map(({ error, value }) => (error ? `${error.name}/${error.code}` : `resolved ${value}`)))
  t.deepEqual([...names], ['AbortError/ABORT_ERR'])
  t.true(
    signals.every((signal) => getEventListeners(signal, 'abort').length === 0),
    'no abort listener left',
  )
  for (const socket of [...senders, ...peers]) socket.destroy()
  server.close()
  t.true((await fdsSettle(baseline)) <= baseline, 'no descriptor leaked')
  t.deepEqual(unexpected, [])
})

test.serial('100,000 sendFile calls queued on one socket and aborted leave the socket usable and the process alive', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'queued.bin', pattern(64 * 1024, 67))
  // In a child process: a regression here is a stack overflow, which would kill the runner.
  const { stdout } = await util.promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'children', 'queued-aborts.ts'), '100000', file],
    { timeout: 120_000 },
  )
  // Every call rejected, and the peer got the 8 MiB written before them and the write after, nothing else.
  t.deepEqual(JSON.parse(stdout), { aborted: 100_000, other: 0, received: 8 * MiB + 'after'.length })
})

// ---------------------------------------------------------------------------------------------
// Argument fuzzing: only documented errors, never a crash, a hang or a panic.

const DOCUMENTED_CODES = new Set([
  'ERR_INVALID_ARG_TYPE',
  'ERR_OUT_OF_RANGE',
  'ERR_INVALID_ARG_VALUE',
  'ERR_SENDFILE_UNSUPPORTED',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_WRITE_AFTER_END',
  'ABORT_ERR',
])

function isDocumentedError(error: unknown): boolean {
  if (!(error instanceof Error)) return false
  const { code, errno, syscall } = error as NodeJS.ErrnoException
  if (typeof code !== 'string') return false
  if (DOCUMENTED_CODES.has(code)) return true
  // A system error: Node's shape.
  return /^E[A-Z0-9]+$/.test(code) && typeof errno === 'number' && errno < 0 && typeof syscall === 'string'
}

test.serial('fuzzed arguments to every public function produce only documented errors', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'fuzz-source', pattern(10_000, 67))
  const sourceFd = fs.openSync(file, 'r')
  const sinkPath = path.join(dir, 'fuzz-sink')
  const sinkFd = fs.openSync(sinkPath, 'w')
  const { sender, receiver } = await unixPair(t, dir)
  void collect(receiver).catch(() => {}) // a reading peer: every transfer can finish
  // Fuzzed strings are relative paths: let them land in the temp dir, never in the repository.
  const cwd = process.cwd()
  process.chdir(dir)
  t.teardown(() => {
    process.chdir(cwd)
    fs.closeSync(sourceFd)
    fs.closeSync(sinkFd)
  })
  // Fds are drawn only from ours and from numbers that are surely not open: a random small
  // number could be the test runner's own IPC channel, and a closed one may be reused.
  const fd = fc.oneof(fc.constantFrom(sourceFd, sinkFd, 2 ** 31 - 1, 99_999, 77_777), fc.integer({ min: -5, max: -1 }))
  const position = fc.oneof(
    fc.constant(undefined),
    fc.constant(null),
    fc.integer({ min: -3, max: 20_000 }),
    fc.double(),
    fc.constantFrom(2 ** 53, Number.MAX_SAFE_INTEGER, -0, Infinity, NaN),
    fc.string(),
    fc.bigInt(),
  )
  // A number in a source, target or destination slot is an fd: only the curated ones may be
  // integers there (5 could be the runner's IPC pipe, and reading it would hang the test).
  const couldBeAnOpenFd = (value: unknown) => typeof value === 'number' && Number.isInteger(value) && value >= 0 && value < 2 ** 31
  const junk = fc.oneof(
    fd,
    position.filter((value) => !couldBeAnOpenFd(value)),
    fc.anything().filter((value) => !couldBeAnOpenFd(value)),
    fc.constantFrom(file, sinkPath, path.join(dir, 'missing'), dir, new URL(`file://${file}`), new URL('http://example.invalid/')),
  )
  const options = fc.oneof(
    fc.constant(undefined),
    fc.anything(),
    fc.record(
      {
        offset: position,
        length: position,
        destinationOffset: position,
        mode: fc.oneof(fc.integer({ min: -1, max: 9 }), fc.anything()),
        fallback: fc.oneof(fc.boolean(), fc.anything()),
        onProgress: fc.oneof(
          fc.constant(() => {}),
          fc.anything(),
        ),
        signal: fc.oneof(fc.constant(AbortSignal.abort()), fc.constant(new AbortController().signal), fc.anything()),
      },
      { requiredKeys: [] },
    ),
  )

  const expectDocumented = async (name: string, call: () => unknown, args: unknown[] = []) => {
    let outcome: unknown
    try {
      outcome = call()
    } catch (error) {
      if (!isDocumentedError(error)) t.fail(`${name} threw ${String(error)} (${(error as NodeJS.ErrnoException).code})`)
      return
    }
    if (outcome instanceof Promise) {
      const settled = await Promise.race([settle(outcome), tick(10_000).then(() => 'hung' as const)])
      if (settled === 'hung') return t.fail(`${name} did not settle: ${util.inspect(args, { depth: 2 })}`)
      if (settled.error !== undefined && !isDocumentedError(settled.error)) t.fail(`${name} rejected with ${String(settled.error)} (${settled.error.code})`)
    }
  }

  await fc.assert(
    fc.asyncProperty(fd, fd, position, position, async (outFd, inFd, offset, count) => {
      const out = outFd === sourceFd ? sinkFd : outFd
      await expectDocumented('sendfileSync', () => (sendfileSync as (...args: unknown[]) => number)(out, inFd, offset, count))
      await expectDocumented('sendfile', () => (sendfile as (...args: unknown[]) => Promise<number>)(out, inFd, offset, count))
    }),
    { numRuns: 300 },
  )
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.constant(sender), fc.constant(sinkFd), junk), junk, options, async (target, source, opts) => {
      await expectDocumented('sendFile', () => (sendFile as (...args: unknown[]) => Promise<number>)(target, source, opts), [
        target === sender ? 'the socket' : target,
        source,
        opts,
      ])
    }),
    { numRuns: 300 },
  )
  await fc.assert(
    fc.asyncProperty(junk, fc.oneof(fc.constant(sinkPath), fc.constant(sinkFd), junk), options, async (source, destination, opts) => {
      // Never let a fuzzed copy write over the source fixture itself.
      const target = destination === file || (destination instanceof URL && destination.protocol === 'file:') ? sinkPath : destination
      await expectDocumented('copyFile', () => (copyFile as (...args: unknown[]) => Promise<number>)(source, target, opts))
      await expectDocumented('copyFileSync', () => (copyFileSync as (...args: unknown[]) => number)(source, target, opts))
      await expectDocumented('socketFd', () => (socketFd as (...args: unknown[]) => number)(source))
    }),
    { numRuns: 300 },
  )
  t.is(sha256(fs.readFileSync(file)), sha256(pattern(10_000, 67)), 'the source fixture is intact')
  t.deepEqual(unexpected, [])
})
