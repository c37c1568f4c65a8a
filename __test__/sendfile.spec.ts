import test, { type ExecutionContext } from 'ava'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'

import { sendfile, sendfileSync, socketFd } from '..'
import {
  byteAtPosition,
  collect,
  collectHash,
  errno,
  linuxTest,
  openFdCount,
  openForTest,
  pattern,
  sha256,
  tcpPair,
  tempDir,
  tick,
  unixPair,
  writeFixture,
  type SocketPair,
} from './helpers'
import { MiB, eventually, fdsOpenOn, isPending, rejectionOf, sparseFile, within } from './socket-fixtures'

interface Sender {
  name: string
  /** Sends `[offset, offset + count)` (count 0: to end of file) to a socket fd, returns the bytes sent. */
  send(outFd: number, inFd: number, offset: number | null, count: number): Promise<number>
}

/** `sendfileSync` on a non-blocking socket sends what fits; this keeps calling it while the reader drains. */
async function sendSyncUntilDone(outFd: number, inFd: number, offset: number | null, count: number): Promise<number> {
  let total = 0
  for (;;) {
    const wanted = count === 0 ? 0 : count - total
    if (count !== 0 && wanted === 0) return total
    let sent: number
    try {
      sent = sendfileSync(outFd, inFd, offset === null ? null : offset + total, wanted)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error
      await tick(1)
      continue
    }
    if (sent === 0) return total
    total += sent
    await tick(0)
  }
}

const senders: Sender[] = [
  { name: 'sendfile', send: (outFd, inFd, offset, count) => sendfile(outFd, inFd, offset, count) },
  { name: 'sendfileSync', send: sendSyncUntilDone },
]

const transports: Array<{ name: string; pair: (t: ExecutionContext, dir: string) => Promise<SocketPair> }> = [
  { name: 'TCP', pair: (t) => tcpPair(t) },
  { name: 'a Unix socket', pair: unixPair },
]

for (const sender of senders) {
  for (const transport of transports) {
    test(`${sender.name} sends a whole file to ${transport.name} and the peer receives exactly its bytes`, async (t) => {
      const dir = tempDir(t)
      const contents = pattern(3 * MiB + 17)
      const fd = openForTest(t, writeFixture(dir, 'song.bin', contents))
      const { sender: socket, receiver } = await transport.pair(t, dir)
      const received = collectHash(receiver)
      const sent = await sender.send(socketFd(socket), fd, 0, 0)
      socket.end()
      t.is(sent, contents.length)
      t.deepEqual(await received, { sha256: sha256(contents), bytes: contents.length })
    })
  }

  test(`${sender.name} sends offset and count slices exactly`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(200_003, 7)
    const fd = openForTest(t, writeFixture(dir, 'slices.bin', contents))
    const slices: Array<[number, number]> = [
      [0, 1],
      [1, 4096],
      [4095, 4097],
      [100_000, 50_000],
      [200_002, 1],
      [199_000, 5_000], // runs past end of file: short
    ]
    for (const [offset, count] of slices) {
      const { sender: socket, receiver } = await tcpPair(t)
      const received = collect(receiver)
      const sent = await sender.send(socketFd(socket), fd, offset, count)
      socket.end()
      const expected = contents.subarray(offset, offset + count)
      t.is(sent, expected.length, `bytes sent for [${offset}, +${count})`)
      t.is(sha256(await received), sha256(expected), `bytes received for [${offset}, +${count})`)
    }
  })

  test(`${sender.name} leaves the file position alone with an explicit offset and advances it with null`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(50_000, 3)
    const fd = openForTest(t, writeFixture(dir, 'position.bin', contents))
    fs.readSync(fd, Buffer.alloc(1000), 0, 1000, null) // position 1000
    const { sender: socket, receiver } = await tcpPair(t)
    const received = collect(receiver)

    t.is(await sender.send(socketFd(socket), fd, 20_000, 5_000), 5_000)
    t.is(byteAtPosition(fd), contents[1000], 'position unchanged by an explicit offset') // now 1001

    t.is(await sender.send(socketFd(socket), fd, null, 9_999), 9_999)
    t.is(byteAtPosition(fd), contents[11_000], 'position advanced by null') // now 11001

    t.is(await sender.send(socketFd(socket), fd, null, 0), contents.length - 11_001, 'null offset and count 0: from the position to end of file')
    t.is(byteAtPosition(fd), null, 'position at end of file')
    socket.end()
    const expected = Buffer.concat([contents.subarray(20_000, 25_000), contents.subarray(1001, 11_000), contents.subarray(11_001)])
    t.is(sha256(await received), sha256(expected))
  })

  test(`${sender.name} returns 0 for an empty file and for offsets at and past end of file`, async (t) => {
    const dir = tempDir(t)
    const empty = openForTest(t, writeFixture(dir, 'empty', Buffer.alloc(0)))
    const small = openForTest(t, writeFixture(dir, 'small', pattern(100)))
    const { sender: socket, receiver } = await tcpPair(t)
    const received = collect(receiver)
    t.is(await sender.send(socketFd(socket), empty, 0, 0), 0)
    t.is(await sender.send(socketFd(socket), empty, null, 10), 0)
    t.is(await sender.send(socketFd(socket), small, 100, 0), 0)
    t.is(await sender.send(socketFd(socket), small, 100, 5), 0)
    t.is(await sender.send(socketFd(socket), small, 101, 5), 0)
    t.is(await sender.send(socketFd(socket), small, 2 ** 40, 0), 0)
    t.is(await sender.send(socketFd(socket), small, Number.MAX_SAFE_INTEGER, 1), 0)
    socket.end()
    t.is((await received).length, 0)
  })
}

test('omitted offset and count send from the file position to end of file', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(10_000, 11)
  const fd = openForTest(t, writeFixture(dir, 'omitted', contents))
  const destination = path.join(dir, 'copy')
  const out = openForTest(t, destination, 'w')
  t.is(sendfileSync(out, fd), contents.length)
  t.is(byteAtPosition(fd), null)
  t.is(sha256(fs.readFileSync(destination)), sha256(contents))
  // From a position other than 0, so "the file position" cannot pass for "offset 0".
  const outAsync = openForTest(t, path.join(dir, 'copy-async'), 'w')
  const reopened = openForTest(t, path.join(dir, 'omitted'))
  fs.readSync(reopened, Buffer.alloc(1234), 0, 1234, null)
  t.is(await sendfile(outAsync, reopened), contents.length - 1234)
  t.is(byteAtPosition(reopened), null)
  t.is(sha256(fs.readFileSync(path.join(dir, 'copy-async'))), sha256(contents.subarray(1234)))
})

test('file to file: both forms copy exactly and advance the destination position', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(5 * MiB + 3, 5)
  const fd = openForTest(t, writeFixture(dir, 'source', contents))
  const destination = path.join(dir, 'destination')
  const out = openForTest(t, destination, 'w')
  t.is(sendfileSync(out, fd, 0, 1 * MiB), 1 * MiB)
  t.is(await sendfile(out, fd, 1 * MiB), contents.length - 1 * MiB)
  t.is(fs.fstatSync(out).size, contents.length)
  t.is(sha256(fs.readFileSync(destination)), sha256(contents))
  t.is(byteAtPosition(fd), contents[0], 'source position untouched')
})

test('a sparse file larger than 4 GiB is sent from above 2^32 exactly, to a socket and to a file', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'sparse')
  const marker = Buffer.from('a marker written above 2^32 bytes')
  const markerAt = 2 ** 32 + 123_457
  const writable = openForTest(t, file, 'w+')
  fs.ftruncateSync(writable, 2 ** 32 + 2 * MiB)
  fs.writeSync(writable, marker, 0, marker.length, markerAt)
  const fd = openForTest(t, file)
  const expected = Buffer.concat([Buffer.alloc(100), marker, Buffer.alloc(1000 - 100 - marker.length)])

  const { sender: socket, receiver } = await tcpPair(t)
  const received = collect(receiver)
  t.is(await sendfile(socketFd(socket), fd, markerAt - 100, 1000), 1000)
  socket.end()
  t.true((await received).equals(expected))

  const copy = openForTest(t, path.join(dir, 'copy'), 'w+')
  t.is(sendfileSync(copy, fd, markerAt - 100, 1000), 1000)
  const back = Buffer.alloc(1000)
  fs.readSync(copy, back, 0, 1000, 0)
  t.true(back.equals(expected))

  // From the top of the file to its end, past 2^32, in more than one kernel call (each is capped at 0x7ffff000).
  const tail = openForTest(t, path.join(dir, 'tail'), 'w+')
  const from = 2 ** 31 - 5
  t.is(sendfileSync(tail, fd, from, 0), 2 ** 32 + 2 * MiB - from)
  const around = Buffer.alloc(marker.length)
  fs.readSync(tail, around, 0, marker.length, markerAt - from)
  t.true(around.equals(marker))
})

test('sendfileSync on a full non-blocking socket returns a short count or throws EAGAIN, and the count is what the peer receives', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(64 * MiB, 13)
  const fd = openForTest(t, writeFixture(dir, 'big', contents))
  const { sender: socket, receiver } = await tcpPair(t) // the receiver is paused: nothing reads
  const out = socketFd(socket)

  const first = sendfileSync(out, fd, 0, 0)
  t.true(first > 0 && first < contents.length, `first call sent a short count (${first})`)
  const second = (() => {
    try {
      return sendfileSync(out, fd, first, 0)
    } catch (error) {
      t.is((error as NodeJS.ErrnoException).code, 'EAGAIN')
      t.is((error as NodeJS.ErrnoException).errno, errno('EAGAIN'))
      t.is((error as NodeJS.ErrnoException).syscall, 'sendfile')
      return 0
    }
  })()
  const sentSync = first + second

  // The async form waits for the reader; it cannot finish while nothing reads.
  let settled = false
  const rest = sendfile(out, fd, sentSync, 0).finally(() => {
    settled = true
  })
  await tick(200)
  t.false(settled, 'the async transfer waits while the peer reads nothing')

  const received = collect(receiver)
  t.is(await rest, contents.length - sentSync)
  socket.end()
  t.is(sha256(await received), sha256(contents))
})

test('closing the caller fds right after sendfile() starts never redirects a byte', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(8 * MiB, 17)
  const other = pattern(8 * MiB, 18)
  const source = writeFixture(dir, 'source', contents)
  writeFixture(dir, 'other', other)
  const { sender: socket, receiver } = await tcpPair(t)
  const fd = fs.openSync(source, 'r')
  const transfer = sendfile(socketFd(socket), fd, 0, 0)
  fs.closeSync(fd)
  const reused = openForTest(t, path.join(dir, 'other'))
  t.is(reused, fd, 'the fd number was reused')
  const received = collectHash(receiver)
  t.is(await transfer, contents.length)
  socket.end()
  t.is((await received).sha256, sha256(contents))
})

test('system errors have code, negative errno and syscall, from both forms', async (t) => {
  const dir = tempDir(t)
  const fd = openForTest(t, writeFixture(dir, 'source', pattern(1000)))
  const [pipeRead, pipeWrite] = await makePipe(t)
  const readOnly = openForTest(t, path.join(dir, 'source'))
  const closed = fs.openSync(path.join(dir, 'source'), 'r')
  fs.closeSync(closed) // nothing opens a file between here and its use

  const cases: Array<{ why: string; args: [number, number, number | null, number]; code: string; errno: number }> = [
    { why: 'closed source fd', args: [pipeWrite, closed, 0, 0], code: 'EBADF', errno: errno('EBADF') },
    { why: 'read-only destination', args: [readOnly, fd, 0, 10], code: 'EBADF', errno: errno('EBADF') },
    { why: 'an offset into a pipe', args: [pipeWrite, pipeRead, 0, 10], code: 'ESPIPE', errno: errno('ESPIPE') },
    { why: 'a pipe as the source', args: [pipeWrite, pipeRead, null, 10], code: 'EINVAL', errno: errno('EINVAL') },
  ]
  for (const { why, args, code, errno } of cases) {
    const expected = { code, errno, syscall: 'sendfile' }
    const thrown = t.throws(() => sendfileSync(...args), undefined, why) as NodeJS.ErrnoException
    t.like(thrown, expected, `sendfileSync: ${why}`)
    t.regex(thrown.message, new RegExp(`^${code}: .+, sendfile$`))
    const rejected = (await t.throwsAsync(sendfile(...args), undefined, why)) as NodeJS.ErrnoException
    t.like(rejected, expected, `sendfile: ${why}`)
  }
})

test('writing to a socket whose peer is gone fails with EPIPE or ECONNRESET', async (t) => {
  const dir = tempDir(t)
  const fd = openForTest(t, writeFixture(dir, 'source', pattern(4 * MiB)))
  for (const form of ['sync', 'async'] as const) {
    for (const [transport, pair] of [
      ['TCP', tcpPair(t)],
      ['Unix', unixPair(t, dir)],
    ] as const) {
      const { sender: socket, receiver } = await pair
      // Paused, Node does not read the reset and so does not close the fd under us.
      socket.pause()
      if (transport === 'TCP') receiver.resetAndDestroy()
      else receiver.destroy() // Unix sockets have no reset; a closed peer gives EPIPE
      const out = socketFd(socket)
      let error: NodeJS.ErrnoException | undefined
      // Until the reset has reached our side, bytes still fit in the buffer: a bounded retry.
      for (let attempt = 0; attempt < 200 && error === undefined; attempt++) {
        try {
          if (form === 'sync') sendfileSync(out, fd, 0, 0)
          else await sendfile(out, fd, 0, 0)
          await tick(5)
        } catch (caught) {
          error = caught as NodeJS.ErrnoException
        }
      }
      t.true(error?.code === 'EPIPE' || error?.code === 'ECONNRESET', `${form} over ${transport}: ${error?.code}`)
      t.is(error?.syscall, 'sendfile')
    }
  }
})

test('bad arguments are reported as Node reports them, and the async form rejects instead of throwing', async (t) => {
  const typeErrors: unknown[][] = [
    ['1', 0],
    [1, '0'],
    [1, 0, '0'],
    [1, 0, 0, null],
    [1, 0, 0, 10n],
  ]
  for (const args of typeErrors) {
    const call = sendfileSync as (...args: unknown[]) => number
    const callAsync = sendfile as (...args: unknown[]) => Promise<number>
    t.throws(() => call(...args), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, `sendfileSync(${args.map(String)})`)
    let promise: Promise<number> | undefined
    t.notThrows(() => {
      promise = callAsync(...args)
    })
    await t.throwsAsync(promise!, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  }
  // Not integers (a fraction, NaN, Infinity) are RangeErrors too, as Node's own validateInteger answers.
  const rangeErrors: unknown[][] = [
    [-1, 0],
    [1, 2 ** 31],
    [1, 0, -1],
    [1, 0, 2 ** 53],
    [1, 0, 0, -5],
    [1, 0, 0, Number.MAX_SAFE_INTEGER + 1],
    [Infinity, 0],
    [1.5, 0],
    [1, 0, 1.5],
    [1, 0, 0, 2.5],
    [NaN, 0],
  ]
  for (const args of rangeErrors) {
    const call = sendfileSync as (...args: unknown[]) => number
    const callAsync = sendfile as (...args: unknown[]) => Promise<number>
    t.throws(() => call(...args), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `sendfileSync(${args.map(String)})`)
    await t.throwsAsync(callAsync(...args), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' })
  }
})

// Serial: it counts the process's fds, which concurrent tests would disturb.
linuxTest.serial('1000 async transfers wait on stalled peers without starving fs, then all finish with exact bytes', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(1 * MiB, 23)
  const file = writeFixture(dir, 'shared.bin', contents)
  const fd = openForTest(t, file)
  const server = net.createServer({ pauseOnConnect: true })
  const socketPath = path.join(dir, 'many.sock')
  await new Promise<void>((resolve) => server.listen({ path: socketPath, backlog: 2048 }, resolve))
  const receivers: net.Socket[] = []
  server.on('connection', (socket) => receivers.push(socket))
  t.teardown(() => server.close())

  const senders: net.Socket[] = []
  t.teardown(() => {
    for (const socket of senders) socket.destroy()
  })
  // In batches, so the listen backlog never overflows (a Unix socket answers EAGAIN then).
  for (let batch = 0; batch < 10; batch++) {
    const connected = await Promise.all(
      Array.from(
        { length: 100 },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const socket = net.connect(socketPath, () => resolve(socket)).once('error', reject)
          }),
      ),
    )
    senders.push(...connected)
  }
  while (receivers.length < senders.length) await tick(5)
  t.teardown(() => {
    for (const socket of receivers) socket.destroy()
  })

  const transfers = senders.map((socket) => sendfile(socketFd(socket), fd, 0, 0))
  let finished = 0
  for (const transfer of transfers)
    transfer.then(
      () => finished++,
      () => {},
    )
  // Each peer's buffer takes far less than 1 MiB: every transfer is now waiting for writability.
  await tick(100)
  const stat = await fs.promises.stat(file)
  t.is(stat.size, contents.length)
  t.is(sha256(await fs.promises.readFile(file)), sha256(contents))
  const statsInParallel = await Promise.all(Array.from({ length: 8 }, () => fs.promises.stat(dir)))
  t.is(statsInParallel.length, 8)
  t.is(finished, 0, 'no transfer finished while every peer was stalled')
  const fdsWhileStalled = openFdCount()

  const received = receivers.map((socket) => collectHash(socket))
  const sent = await Promise.all(transfers)
  t.true(sent.every((bytes) => bytes === contents.length))
  // Each transfer held private duplicates of its socket and file: all 2000 are closed by now.
  t.true(openFdCount() <= fdsWhileStalled - 2000, `fds ${fdsWhileStalled} while stalled, ${openFdCount()} after`)
  for (const socket of senders) socket.end()
  const hashes = await Promise.all(received)
  t.true(
    hashes.every(({ sha256: hash }) => hash === sha256(contents)),
    'every peer received the exact file',
  )
})

/** A pipe as two raw fds, closed when the test ends (Node has no pipe(2); a FIFO gives the same fds). */
async function makePipe(t: ExecutionContext): Promise<[number, number]> {
  const dir = tempDir(t)
  const fifo = path.join(dir, 'fifo')
  const { execFileSync } = await import('node:child_process')
  execFileSync('mkfifo', [fifo])
  const read = fs.openSync(fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const write = fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK)
  t.teardown(() => {
    fs.closeSync(read)
    fs.closeSync(write)
  })
  return [read, write]
}

test('an async transfer from a just-closed fd fails with EBADF and never copies the output into itself', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(1000, 71)
  const outFile = writeFixture(dir, 'out', contents)
  const out = openForTest(t, outFile, 'r+')
  const { sender } = await tcpPair(t)
  for (const [what, outFd] of [
    ['a regular file', out],
    ['a socket', socketFd(sender)],
  ] as const) {
    // Closed just before the call, so its number is the lowest free one, where a plain dup of
    // the output would land.
    const closed = fs.openSync(outFile, 'r')
    fs.closeSync(closed)
    const error = (await t.throwsAsync(sendfile(outFd, closed, 0, 1000))) as NodeJS.ErrnoException
    t.like(error, { code: 'EBADF', errno: errno('EBADF'), syscall: 'sendfile' }, what)
  }
  t.is(sha256(fs.readFileSync(outFile)), sha256(contents), 'the output is untouched')
})

test('a file sent into itself is refused where the ranges overlap and stops at its old end otherwise', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(100_000, 73)
  const file = writeFixture(dir, 'itself', contents)
  const both = openForTest(t, file, 'r+')
  // Read from 0 and written at the same fd's position 0: every byte read is one just written.
  t.like(
    t.throws(() => sendfileSync(both, both, 0)),
    { code: 'EINVAL', syscall: 'sendfile' },
  )
  t.like(await t.throwsAsync(sendfile(both, both, 0)), { code: 'EINVAL', syscall: 'sendfile' })
  t.like(
    t.throws(() => sendfileSync(both, both, null, 10)),
    { code: 'EINVAL', syscall: 'sendfile' },
  )
  t.is(fs.statSync(file).size, contents.length, 'nothing written')

  // Written at the end through a second fd: until end of file means the end it started with.
  const atEnd = openForTest(t, file, 'r+')
  const appendAt = (fd: number) => fs.readSync(fd, Buffer.alloc(contents.length), 0, contents.length, null)
  t.is(appendAt(atEnd), contents.length, 'the second fd now sits at the end')
  t.is(sendfileSync(atEnd, both, 0), contents.length)
  t.is(await sendfile(atEnd, both, 0), 2 * contents.length)
  t.is(sha256(fs.readFileSync(file)), sha256(Buffer.concat([contents, contents, contents, contents])))
})

linuxTest('sendfile with a signal stops a transfer to a stalled peer, closes its duplicates and rejects with bytesSent', async (t) => {
  const dir = tempDir(t)
  const file = sparseFile(dir, 'stall.bin', 64 * MiB)
  const fd = fs.openSync(file, 'r')
  const { sender, receiver } = await tcpPair(t)
  const controller = new AbortController()
  const transfer = sendfile(socketFd(sender), fd, 0, undefined, { signal: controller.signal })
  transfer.catch(() => {})
  t.true(await eventually(() => fdsOpenOn(file).length === 2), 'our fd and the transfer duplicate')
  // Closing the caller's fds does not stop a low-level transfer: its duplicates keep both open.
  sender.destroy()
  fs.closeSync(fd)
  t.true(await isPending(transfer))
  controller.abort()
  const error = (await within(rejectionOf(transfer), 5000, 'the aborted transfer')) as NodeJS.ErrnoException & { bytesSent?: number }
  t.is(error.name, 'AbortError')
  t.is(error.code, 'ABORT_ERR')
  t.true(typeof error.bytesSent === 'number' && error.bytesSent < 64 * MiB, String(error.bytesSent))
  t.true(await eventually(() => fdsOpenOn(file).length === 0), 'the duplicate of the file is closed')
  // The duplicate of the socket is closed too: the peer sees the end of the stream.
  const received = await within(collect(receiver), 10_000, 'the peer seeing FIN')
  t.is(received.length, error.bytesSent ?? -1)
})

test('sendfile rejects an aborted signal before doing anything, and bad options as Node does', async (t) => {
  const dir = tempDir(t)
  const fd = openForTest(t, writeFixture(dir, 'source', pattern(10)))
  const [, pipeWrite] = await makePipe(t)
  t.like(await t.throwsAsync(sendfile(pipeWrite, fd, 0, undefined, { signal: AbortSignal.abort() })), { name: 'AbortError', code: 'ABORT_ERR' })
  t.like(await t.throwsAsync(sendfile(pipeWrite, fd, 0, undefined, { signal: 'soon' as unknown as AbortSignal })), { code: 'ERR_INVALID_ARG_TYPE' })
  t.like(await t.throwsAsync(sendfile(pipeWrite, fd, 0, undefined, 5 as unknown as object)), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('small async transfers: one the socket takes settles with its bytes and leaves no duplicate open, one a full socket stalls waits and ends exact', async (t) => {
  const dir = tempDir(t)
  const small = pattern(16 * 1024, 5)
  const smallFile = writeFixture(dir, 'small', small)
  const smallFd = openForTest(t, smallFile)
  const big = pattern(8 * MiB, 7)
  const bigFd = openForTest(t, writeFixture(dir, 'big', big))
  const { sender, receiver } = await tcpPair(t) // the receiver is paused: nothing reads
  const out = socketFd(sender)

  t.is(await sendfile(out, smallFd, 0, small.length), small.length)
  t.is(fdsOpenOn(smallFile).length, 1, 'only the test fd: the transfer needed no duplicate')
  // Fill the socket, then ask for a small range it cannot take now: it waits, then finishes.
  let filled = 0
  for (;;) {
    try {
      filled += sendfileSync(out, bigFd, filled, 0)
    } catch (error) {
      t.is((error as NodeJS.ErrnoException).code, 'EAGAIN')
      break
    }
  }
  t.true(filled < big.length, `the socket took ${filled} bytes before it was full`)
  const rest = sendfile(out, smallFd, 0, small.length)
  t.true(await isPending(rest), 'a small transfer into a full socket waits for the reader')
  const received = collect(receiver)
  t.is(await within(rest, 10_000, 'the small transfer'), small.length)
  sender.end()
  t.is(sha256(await received), sha256(Buffer.concat([small, big.subarray(0, filled), small])))
})

linuxTest('a worker thread that ends with a transfer pending or done exits cleanly, and the main thread goes on sending', async (t) => {
  const dir = tempDir(t)
  const file = sparseFile(dir, 'stall.bin', 64 * MiB)
  const { Worker } = await import('node:worker_threads')
  const worker = (code: string) =>
    new Worker(
      `const net = require('node:net'); const fs = require('node:fs'); const { parentPort } = require('node:worker_threads');
       const { sendfile, socketFd } = require(${JSON.stringify(path.resolve(__dirname, '..'))});
       ${code}`,
      { eval: true, workerData: null },
    )
  // Terminated while its transfer waits on a peer that never reads: the pending outcome is
  // dropped with the worker's env, and nothing crashes.
  const stalled = worker(`
    const server = net.createServer({ pauseOnConnect: true }, () => {}).listen(0, '127.0.0.1', () => {
      const socket = net.connect(server.address().port, '127.0.0.1', () => {
        sendfile(socketFd(socket), fs.openSync(${JSON.stringify(file)}, 'r'), 0, 0).catch(() => {})
        setTimeout(() => parentPort.postMessage('pending'), 100)
      })
    })`)
  await within(new Promise((resolve) => stalled.once('message', resolve)), 10_000, 'the stalled worker')
  t.is(await within(stalled.terminate(), 10_000, 'terminating the worker'), 1)
  // A worker whose transfers are all done exits by itself: nothing of ours keeps its loop alive.
  const done = worker(`
    const server = net.createServer((peer) => peer.resume().on('end', () => server.close())).listen(0, '127.0.0.1', () => {
      const socket = net.connect(server.address().port, '127.0.0.1', async () => {
        const sent = await sendfile(socketFd(socket), fs.openSync(${JSON.stringify(file)}, 'r'), 0, 4 * 1024 * 1024)
        parentPort.postMessage(sent)
        socket.end()
      })
    })`)
  const sent = within(new Promise((resolve) => done.once('message', resolve)), 10_000, 'the finishing worker')
  const exitCode = within(new Promise((resolve) => done.once('exit', resolve)), 10_000, 'the finishing worker exiting')
  t.is(await sent, 4 * MiB)
  t.is(await exitCode, 0)
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  t.is(await sendfile(socketFd(sender), openForTest(t, file), 0, MiB), MiB)
  sender.end()
  t.is((await received).length, MiB)
})
