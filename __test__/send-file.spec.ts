import test, { type ExecutionContext } from 'ava'
import { execFileSync } from 'node:child_process'
import * as dgram from 'node:dgram'
import { getEventListeners } from 'node:events'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { pathToFileURL } from 'node:url'

import { sendFile, socketFd, type SendFileOptions, type TransferReport } from '..'
import {
  byteAtPosition,
  collect,
  collectHash,
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
import {
  MiB,
  captureReports,
  eventually,
  fdsOpenOn,
  fifoWithWriter,
  hashingChild,
  isPending,
  recordErrors,
  rejectionOf,
  reportsFor,
  sparseFile,
  tlsPair,
  waitUntilStalled,
  within,
} from './socket-fixtures'

// Big enough that a paused peer surely stalls the transfer, on loopback TCP (autotuned buffers of a few MiB) and Unix sockets.
const STALL_SIZE = 64 * MiB
/** Every wait for a promise is bounded by this; none of the tests relies on how fast anything is. */
const BOUND = 20_000

/** `pattern` is slow-ish for tens of MiB: generate each size and seed once per process. */
const patterns = new Map<string, Buffer>()
function data(size: number, seed: number): Buffer {
  const key = `${size}:${seed}`
  let buffer = patterns.get(key)
  if (buffer === undefined) {
    buffer = pattern(size, seed)
    patterns.set(key, buffer)
  }
  return buffer
}

const zeroHashes = new Map<number, string>()
function zeroHash(size: number): string {
  let hash = zeroHashes.get(size)
  if (hash === undefined) {
    hash = sha256(Buffer.alloc(size))
    zeroHashes.set(size, hash)
  }
  return hash
}

interface Transport {
  name: string
  pair(t: ExecutionContext, dir: string): Promise<SocketPair>
}

const transports: Transport[] = [
  { name: 'TCP', pair: (t) => tcpPair(t) },
  { name: 'a Unix socket', pair: unixPair },
]

/** Calls sendFile, failing the test if it throws synchronously instead of returning a promise. */
function callSendFile(t: ExecutionContext, ...args: unknown[]): Promise<number> {
  let promise: Promise<number> | undefined
  t.notThrows(() => {
    promise = (sendFile as (...args: unknown[]) => Promise<number>)(...args)
  }, 'sendFile never throws synchronously')
  t.true(promise instanceof Promise, 'sendFile returns a promise')
  return promise ?? Promise.reject(new Error('sendFile threw'))
}

/** Opens files until one gets fd number `wanted` (fds are allocated lowest first); keeps the lower ones open until the test ends. */
function claimFdNumber(t: ExecutionContext, dir: string, wanted: number): number {
  const opened: number[] = []
  t.teardown(() => {
    for (const fd of opened) {
      try {
        fs.closeSync(fd)
      } catch {
        // Closed by the test.
      }
    }
  })
  for (let i = 0; i < 256; i++) {
    const fd = fs.openSync(path.join(dir, `reuse-${i}`), 'w')
    opened.push(fd)
    if (fd >= wanted) return fd
  }
  return -1
}

// ---------------------------------------------------------------------------------------------
// Serial tests first (ava runs them before the concurrent ones): they count or reuse this process's fds.

for (const transport of transports) {
  linuxTest.serial(
    `destroying the socket during a stalled transfer over ${transport.name} rejects ERR_STREAM_DESTROYED, and a file that reuses its fd number receives nothing`,
    async (t) => {
      const dir = tempDir(t)
      const big = sparseFile(dir, 'big', STALL_SIZE)
      const { sender, receiver } = await transport.pair(t, dir)
      const errors = recordErrors(t, sender)
      receiver.on('error', () => {})
      const oldFd = socketFd(sender)
      t.true(oldFd >= 0)

      const sending = callSendFile(t, sender, big)
      await tick(100)
      t.true(await isPending(sending), 'the transfer is stalled on the paused peer')
      sender.destroy()

      const reused = claimFdNumber(t, dir, oldFd)
      t.is(reused, oldFd, 'a new file got the destroyed socket’s fd number')

      const error = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
      t.is(error.code, 'ERR_STREAM_DESTROYED')
      await tick(100) // the old transfer, were it still running, would have written by now
      t.is(fs.fstatSync(reused).size, 0, 'no byte of the old transfer reached the file that reuses the fd number')
      t.deepEqual(fdsOpenOn(big), [], 'the source path was closed')
      t.deepEqual(errors, [], 'no error event on the destroyed socket')
    },
  )

  linuxTest.serial(
    `destroying the socket during a stalled transfer over ${transport.name} sends nothing to a new socket that reuses its fd number`,
    async (t) => {
      const dir = tempDir(t)
      const big = sparseFile(dir, 'big', STALL_SIZE)
      // The socket that will reuse the fd number connects to this server; everything it carries is collected.
      const freshPath = path.join(dir, 'fresh.sock')
      const server = net.createServer()
      await new Promise<void>((resolve) => server.listen({ path: freshPath }, resolve))
      t.teardown(() => {
        server.close()
      })
      const freshReceived = new Promise<Buffer>((resolve) => server.once('connection', (socket) => resolve(collect(socket))))

      const { sender, receiver } = await transport.pair(t, dir)
      recordErrors(t, sender)
      receiver.on('error', () => {})
      const oldFd = socketFd(sender)
      const sending = callSendFile(t, sender, big)
      await tick(100)
      t.true(await isPending(sending), 'the transfer is stalled on the paused peer')
      sender.destroy()

      // Fill any lower hole, then free the slot again so that the new socket takes exactly that number.
      const claimed = claimFdNumber(t, dir, oldFd)
      t.is(claimed, oldFd)
      fs.closeSync(claimed)
      const fresh = net.connect({ path: freshPath })
      t.teardown(() => {
        fresh.destroy()
      })
      t.is(socketFd(fresh), oldFd, 'the new socket got the destroyed socket’s fd number')

      const error = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
      t.is(error.code, 'ERR_STREAM_DESTROYED')
      await within(new Promise((resolve) => (fresh.connecting ? fresh.once('connect', resolve) : resolve(undefined))), BOUND, 'the new connection')
      await tick(100)
      fresh.end()
      const received = await within(freshReceived, BOUND, 'the new socket’s peer')
      t.is(received.length, 0, 'the new socket carried no byte of the old transfer')
    },
  )

  linuxTest.serial(
    `aborting a stalled transfer over ${transport.name} rejects promptly with AbortError and leaves fds and abort listeners at baseline`,
    async (t) => {
      const dir = tempDir(t)
      const big = sparseFile(dir, 'big', STALL_SIZE)
      const small = writeFixture(dir, 'small', data(4096, 3))
      const { sender, receiver } = await transport.pair(t, dir)
      const errors = recordErrors(t, sender)
      // Warm up (the native runtime opens its own fds once), then take the baseline.
      const warmReceived = collectHash(receiver)
      t.is(await sendFile(sender, small), 4096)
      receiver.pause()
      await tick(20)
      const baseline = openFdCount()

      const controller = new AbortController()
      const sending = callSendFile(t, sender, big, { signal: controller.signal })
      await tick(100)
      t.true(await isPending(sending), 'the transfer is stalled on the paused peer')
      t.true(fdsOpenOn(big).length >= 1, 'the source is open while the transfer runs (the native side holds its own duplicate)')
      controller.abort(new Error('enough'))

      const error = await within(rejectionOf(sending), BOUND, 'sendFile after abort')
      t.is(error.name, 'AbortError')
      t.is(error.code, 'ABORT_ERR')
      t.is(getEventListeners(controller.signal, 'abort').length, 0, 'no abort listener left on the signal')
      t.is(openFdCount(), baseline, 'every fd the transfer opened or duplicated is closed')
      t.deepEqual(fdsOpenOn(big), [])
      t.deepEqual(errors, [])
      void warmReceived
    },
  )
}

// ---------------------------------------------------------------------------------------------
// Sources: who opens and closes, file positions, ranges.

linuxTest('a path source is opened for the transfer and closed when it ends', async (t) => {
  const dir = tempDir(t)
  const big = sparseFile(dir, 'big', STALL_SIZE)
  const { sender, receiver } = await unixPair(t, dir)
  const sending = callSendFile(t, sender, big)
  t.true(await eventually(() => fdsOpenOn(big).length >= 1), 'sendFile opened the path (the native side holds its own duplicate too)')
  t.true(await isPending(sending), 'the transfer is stalled on the paused peer')
  const received = collectHash(receiver)
  t.is(await within(sending, BOUND, 'sendFile'), STALL_SIZE)
  t.deepEqual(fdsOpenOn(big), [], 'sendFile closed the path')
  sender.end()
  t.deepEqual(await received, { sha256: zeroHash(STALL_SIZE), bytes: STALL_SIZE })
})

linuxTest('a file: URL source is sent exactly and closed', async (t) => {
  const dir = tempDir(t)
  const contents = data(100_003, 4)
  const file = writeFixture(dir, 'url source.bin', contents)
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  t.is(await callSendFile(t, sender, pathToFileURL(file), { offset: 3 }), contents.length - 3)
  t.deepEqual(fdsOpenOn(file), [])
  sender.end()
  t.is(sha256(await received), sha256(contents.subarray(3)))
})

linuxTest('an fd source is never closed and its file position never moves, without or with an offset', async (t) => {
  const dir = tempDir(t)
  const contents = data(3 * MiB + 5, 5)
  const file = writeFixture(dir, 'fd.bin', contents)
  const fd = openForTest(t, file)
  fs.readSync(fd, Buffer.alloc(1000), 0, 1000, null) // position 1000
  const { sender, receiver } = await tcpPair(t)
  const received = collectHash(receiver)
  t.is(await callSendFile(t, sender, fd), contents.length, 'no offset: the whole file, from byte 0 whatever the position')
  t.is(await callSendFile(t, sender, fd, { offset: 10, length: 100 }), 100)
  sender.end()
  t.deepEqual(await received, { sha256: sha256(Buffer.concat([contents, contents.subarray(10, 110)])), bytes: contents.length + 100 })
  t.is(byteAtPosition(fd), contents[1000], 'the position is still 1000')
  t.deepEqual(fdsOpenOn(file), [fd], 'the fd is still open')
})

test('a FileHandle source is never closed and its file position never moves', async (t) => {
  const dir = tempDir(t)
  const contents = data(200_001, 6)
  const file = writeFixture(dir, 'handle.bin', contents)
  const handle = await fs.promises.open(file)
  t.teardown(() => handle.close())
  await handle.read(Buffer.alloc(500), 0, 500, null) // position 500
  const { sender, receiver } = await unixPair(t, dir)
  const received = collect(receiver)
  t.is(await callSendFile(t, sender, handle), contents.length)
  t.is(await callSendFile(t, sender, handle, { offset: 7, length: 9 }), 9)
  sender.end()
  t.is(sha256(await received), sha256(Buffer.concat([contents, contents.subarray(7, 16)])))
  t.not(handle.fd, -1, 'the handle is still open')
  const next = Buffer.alloc(1)
  await handle.read(next, 0, 1, null)
  t.is(next[0], contents[500], 'the position is still 500')
})

for (const transport of transports) {
  test(`over ${transport.name}, a length past the end sends what remains and resolves with that count`, async (t) => {
    const dir = tempDir(t)
    const contents = data(1000, 7)
    const file = writeFixture(dir, 'short.bin', contents)
    const { sender, receiver } = await transport.pair(t, dir)
    const received = collect(receiver)
    t.is(await callSendFile(t, sender, file, { offset: 100, length: 10_000 }), 900)
    t.is(await callSendFile(t, sender, file, { length: 2 ** 40 }), 1000)
    t.is(await callSendFile(t, sender, file, { offset: 999, length: Number.MAX_SAFE_INTEGER }), 1)
    sender.end()
    t.is(sha256(await received), sha256(Buffer.concat([contents.subarray(100), contents, contents.subarray(999)])))
  })

  test(`over ${transport.name}, an empty file, an offset at or past the end and a length of 0 resolve 0 and send nothing`, async (t) => {
    const dir = tempDir(t)
    const empty = writeFixture(dir, 'empty', Buffer.alloc(0))
    const file = writeFixture(dir, 'small', data(100, 8))
    const fd = openForTest(t, file)
    const { sender, receiver } = await transport.pair(t, dir)
    const received = collect(receiver)
    t.is(await callSendFile(t, sender, empty), 0, 'empty file')
    t.is(await callSendFile(t, sender, empty, { length: 10 }), 0, 'empty file with a length')
    t.is(await callSendFile(t, sender, file, { offset: 100 }), 0, 'offset = size')
    t.is(await callSendFile(t, sender, fd, { offset: 100, length: 5 }), 0, 'offset = size, fd source')
    t.is(await callSendFile(t, sender, file, { offset: 2 ** 40 }), 0, 'offset past the end')
    t.is(await callSendFile(t, sender, file, { length: 0 }), 0, 'length 0')
    sender.end()
    t.is((await received).length, 0)
  })
}

// ---------------------------------------------------------------------------------------------
// Ordering on the socket.

for (const transport of transports) {
  test(`over ${transport.name}, 8 MiB written before sendFile to a slow peer arrive first, then the file`, async (t) => {
    const dir = tempDir(t)
    const backlog = data(8 * MiB, 9)
    const contents = data(2 * MiB + 3, 10)
    const file = writeFixture(dir, 'after-backlog.bin', contents)
    const { sender, receiver } = await transport.pair(t, dir)
    sender.write(backlog)
    const sending = callSendFile(t, sender, file)
    await tick(100)
    t.true(await isPending(sending), 'the backlog holds the transfer while the peer reads nothing')
    const received = collectHash(receiver)
    t.is(await within(sending, BOUND, 'sendFile'), contents.length)
    sender.end()
    const expected = Buffer.concat([backlog, contents])
    t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  })

  test(`over ${transport.name}, write() and end() made while the transfer runs wait and follow the file, never interleaved`, async (t) => {
    const dir = tempDir(t)
    const contents = data(24 * MiB, 11)
    const file = writeFixture(dir, 'held.bin', contents)
    const { sender, receiver } = await transport.pair(t, dir)
    let finished = false
    sender.once('finish', () => (finished = true))
    const sending = callSendFile(t, sender, file)
    sender.write('x')
    await tick(100)
    t.true(await isPending(sending), 'the transfer is stalled on the paused peer')
    sender.write('y')
    sender.end('bye')
    await tick(20)
    t.false(finished, 'end() waits for the transfer')
    const received = collectHash(receiver)
    t.is(await within(sending, BOUND, 'sendFile'), contents.length)
    const expected = Buffer.concat([contents, Buffer.from('xybye')])
    t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  })

  test(`over ${transport.name}, the socket stays usable after sendFile: a later write arrives after the file`, async (t) => {
    const dir = tempDir(t)
    const contents = data(1 * MiB + 1, 12)
    const file = writeFixture(dir, 'then.bin', contents)
    const { sender, receiver } = await transport.pair(t, dir)
    const received = collectHash(receiver)
    sender.write('hello ')
    t.is(await callSendFile(t, sender, file), contents.length)
    t.true(sender.write('bye'))
    t.is(await callSendFile(t, sender, file, { offset: 1, length: 2 }), 2)
    await new Promise<void>((resolve) => sender.end('!', resolve))
    const expected = Buffer.concat([Buffer.from('hello '), contents, Buffer.from('bye'), contents.subarray(1, 3), Buffer.from('!')])
    t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  })

  test(`over ${transport.name}, concurrent sendFile calls and writes between them arrive in call order`, async (t) => {
    const dir = tempDir(t)
    const a = data(5 * MiB + 1, 13)
    const b = data(1 * MiB + 7, 14)
    const c = data(4097, 15)
    const [fileA, fileB, fileC] = [writeFixture(dir, 'a', a), writeFixture(dir, 'b', b), writeFixture(dir, 'c', c)]
    const { sender, receiver } = await transport.pair(t, dir)
    const settled: string[] = []
    const pa = callSendFile(t, sender, fileA).finally(() => settled.push('a'))
    sender.write('x')
    const pb = callSendFile(t, sender, fileB).finally(() => settled.push('b'))
    sender.write('y')
    const pc = callSendFile(t, sender, openForTest(t, fileC)).finally(() => settled.push('c'))
    const received = collectHash(receiver)
    t.deepEqual(await within(Promise.all([pa, pb, pc]), BOUND, 'three sendFile calls'), [a.length, b.length, c.length])
    t.deepEqual(settled, ['a', 'b', 'c'])
    sender.end('z')
    const expected = Buffer.concat([a, Buffer.from('x'), b, Buffer.from('y'), c, Buffer.from('z')])
    t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  })
}

test('writes corked together with sendFile calls still arrive in call order', async (t) => {
  const dir = tempDir(t)
  const a = data(600_001, 39)
  const b = data(5000, 40)
  const [fileA, fileB] = [writeFixture(dir, 'a', a), writeFixture(dir, 'b', b)]
  const { sender, receiver } = await tcpPair(t)
  const received = collectHash(receiver)
  sender.cork()
  sender.write('1')
  const pa = callSendFile(t, sender, fileA)
  sender.write('2')
  sender.write('3')
  const pb = callSendFile(t, sender, fileB)
  sender.write('4')
  sender.uncork()
  t.deepEqual(await within(Promise.all([pa, pb]), BOUND, 'two corked sendFile calls'), [a.length, b.length])
  sender.end()
  const expected = Buffer.concat([Buffer.from('1'), a, Buffer.from('23'), b, Buffer.from('4')])
  t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
})

test('sendFile on a socket that is still connecting waits for the connection, then sends', async (t) => {
  const dir = tempDir(t)
  const contents = data(300_000, 16)
  const file = writeFixture(dir, 'early.bin', contents)
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, resolve))
  t.teardown(() => {
    server.close()
  })
  const received = new Promise<Buffer>((resolve) => server.once('connection', (socket) => resolve(collect(socket))))
  const socket = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port })
  t.teardown(() => {
    socket.destroy()
  })
  t.true(socket.connecting)
  socket.write('head')
  t.is(await within(callSendFile(t, socket, file), BOUND, 'sendFile'), contents.length)
  socket.end('tail')
  t.is(sha256(await within(received, BOUND, 'the peer')), sha256(Buffer.concat([Buffer.from('head'), contents, Buffer.from('tail')])))
})

linuxTest('sendFile on an ended socket rejects with ERR_STREAM_WRITE_AFTER_END, on a destroyed one with ERR_STREAM_DESTROYED', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'late.bin', data(1000, 17))
  const ended = await tcpPair(t)
  const received = collect(ended.receiver)
  ended.sender.end('only this')
  await t.throwsAsync(callSendFile(t, ended.sender, file), { code: 'ERR_STREAM_WRITE_AFTER_END' })
  t.is((await received).toString(), 'only this')
  const destroyed = await tcpPair(t)
  destroyed.sender.destroy()
  await t.throwsAsync(callSendFile(t, destroyed.sender, file), { code: 'ERR_STREAM_DESTROYED' })
  t.deepEqual(fdsOpenOn(file), [])
})

// ---------------------------------------------------------------------------------------------
// Destroyed sockets and lost peers.

linuxTest('a sendFile queued behind pending writes rejects when the socket is destroyed, without opening the file', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'queued.bin', data(1000, 18))
  const { sender, receiver } = await unixPair(t, dir)
  recordErrors(t, sender)
  receiver.on('error', () => {})
  sender.write(data(8 * MiB, 9))
  const sending = callSendFile(t, sender, file)
  await tick(50)
  t.true(await isPending(sending))
  sender.destroy()
  const error = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
  t.is(error.code, 'ERR_STREAM_DESTROYED')
  t.deepEqual(fdsOpenOn(file), [])
})

test('destroying a socket during a stalled stream-fallback transfer rejects with ERR_STREAM_DESTROYED', async (t) => {
  const { sender, receiver } = await tcpPair(t)
  const errors = recordErrors(t, sender)
  receiver.on('error', () => {})
  let progress = 0
  const sending = callSendFile(t, sender, '/dev/zero', { length: STALL_SIZE, onProgress: (bytes: number) => (progress = bytes) })
  t.true(await waitUntilStalled(() => progress), 'the transfer stalls on the paused peer')
  t.true(await isPending(sending))
  sender.destroy()
  const error = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
  t.is(error.code, 'ERR_STREAM_DESTROYED')
  t.deepEqual(errors, [])
})

linuxTest('destroying a TLS socket during a stalled transfer rejects with ERR_STREAM_DESTROYED', async (t) => {
  const dir = tempDir(t)
  const big = sparseFile(dir, 'big', STALL_SIZE)
  const { sender, receiver } = await tlsPair(t)
  const errors = recordErrors(t, sender)
  receiver.on('error', () => {})
  let progress = 0
  const sending = callSendFile(t, sender, big, { onProgress: (bytes: number) => (progress = bytes) })
  t.true(await waitUntilStalled(() => progress), 'the transfer stalls on the paused peer')
  t.true(await isPending(sending))
  sender.destroy()
  const error = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
  t.is(error.code, 'ERR_STREAM_DESTROYED')
  await tick(20)
  t.deepEqual(fdsOpenOn(big), [])
  t.deepEqual(errors, [])
})

// Serial, so that it runs alone: whether Node's reader or the kernel transfer sees the reset first is a race.
// A correct implementation passes every round; a faulty one fails some rounds, most runs.
linuxTest.serial('a TCP peer reset during a stalled transfer rejects with ECONNRESET or EPIPE and destroys the socket quietly (15 rounds)', async (t) => {
  const dir = tempDir(t)
  const big = sparseFile(dir, 'big', STALL_SIZE)
  const outcomes: string[] = []
  for (let round = 0; round < 15; round++) {
    const { sender, receiver } = await tcpPair(t)
    const errors = recordErrors(t, sender)
    const sending = callSendFile(t, sender, big)
    await tick(100)
    t.true(await isPending(sending), `round ${round}: the transfer is stalled on the paused peer`)
    receiver.resetAndDestroy()
    const error = await within(rejectionOf(sending), BOUND, 'sendFile after the reset')
    t.true(error.code === 'ECONNRESET' || error.code === 'EPIPE', `round ${round}: rejected with ${error.code}: ${error.message}`)
    t.true(sender.destroyed, `round ${round}: the socket is destroyed`)
    await tick(20)
    outcomes.push(`round ${round}: rejected ${error.code}, error events: [${errors.map((e) => (e as Error).message).join(', ')}]`)
    t.deepEqual(fdsOpenOn(big), [])
  }
  t.deepEqual(
    outcomes.filter((outcome) => !outcome.endsWith('[]')),
    [],
    'no error event in any round (the rejection is the report)',
  )
})

for (const [what, setup] of [
  ['TCP from /dev/zero', async (t: ExecutionContext) => ({ ...(await tcpPair(t)), source: '/dev/zero', options: { length: STALL_SIZE } })],
  ['a TLS socket', async (t: ExecutionContext) => ({ ...(await tlsPair(t)), source: sparseFile(tempDir(t), 'big', STALL_SIZE), options: {} })],
] as const) {
  test(`a peer reset during a stalled stream-fallback transfer to ${what} rejects with ECONNRESET or EPIPE and destroys the socket quietly`, async (t) => {
    const { sender, receiver, source, options } = await setup(t)
    const errors = recordErrors(t, sender)
    receiver.on('error', () => {})
    let progress = 0
    const sending = callSendFile(t, sender, source, { ...options, onProgress: (bytes: number) => (progress = bytes) })
    t.true(await waitUntilStalled(() => progress), 'the transfer stalls on the paused peer')
    t.true(await isPending(sending))
    // A TLS socket has no resetAndDestroy; closing a socket with unread bytes in its receive buffer sends a reset all the same.
    if (receiver instanceof tls.TLSSocket) receiver.destroy()
    else receiver.resetAndDestroy()
    const error = await within(rejectionOf(sending), BOUND, 'sendFile after the reset')
    t.true(error.code === 'ECONNRESET' || error.code === 'EPIPE', `rejected with ${error.code}: ${error.message}`)
    t.true(sender.destroyed)
    await tick(20)
    t.deepEqual(
      errors.map((e) => `${(e as NodeJS.ErrnoException).code}: ${(e as Error).message}`),
      [],
      'no error event (the rejection is the report)',
    )
  })
}

linuxTest('a failed sendFile publishes one report carrying the error', async (t) => {
  const dir = tempDir(t)
  const reports = captureReports(t)
  const big = sparseFile(dir, 'big', STALL_SIZE)
  const { sender, receiver } = await unixPair(t, dir)
  receiver.on('error', () => {})
  recordErrors(t, sender)
  const missing = await rejectionOf(callSendFile(t, sender, path.join(dir, 'missing')))
  t.is(onlyReport(t, reports, sender).error, missing)
  reports.length = 0
  let progress = 0
  const sending = callSendFile(t, sender, big, { onProgress: (bytes: number) => (progress = bytes) })
  t.true(await waitUntilStalled(() => progress), 'the transfer stalls on the paused peer')
  t.true(await isPending(sending))
  sender.destroy()
  const destroyed = await within(rejectionOf(sending), BOUND, 'sendFile after destroy')
  const report = onlyReport(t, reports, sender)
  t.is(report.error, destroyed)
  t.is(report.method, 'sendfile')
  t.true(report.bytes > 0, `bytes that went out before the destroy: ${report.bytes}`)
})

linuxTest('a Unix peer closing during a stalled transfer rejects with EPIPE or ECONNRESET and destroys the socket quietly', async (t) => {
  const dir = tempDir(t)
  const big = sparseFile(dir, 'big', STALL_SIZE)
  const { sender, receiver } = await unixPair(t, dir)
  const errors = recordErrors(t, sender)
  const sending = callSendFile(t, sender, big)
  await tick(100)
  t.true(await isPending(sending))
  receiver.destroy()
  const error = await within(rejectionOf(sending), BOUND, 'sendFile after the peer closed')
  t.true(error.code === 'ECONNRESET' || error.code === 'EPIPE', `rejected with ${error.code}: ${error.message}`)
  t.true(sender.destroyed)
  await tick(20)
  t.deepEqual(errors, [])
})

// ---------------------------------------------------------------------------------------------
// AbortSignal.

linuxTest('an already aborted signal rejects with AbortError and the file is never opened', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'never.bin', data(1000, 19))
  const missing = path.join(dir, 'does-not-exist')
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  const controller = new AbortController()
  controller.abort()
  const expected = { name: 'AbortError', code: 'ABORT_ERR' }
  await t.throwsAsync(
    callSendFile(t, sender, missing, { signal: controller.signal }),
    expected,
    'a missing path: AbortError, not ENOENT, so it was never opened',
  )
  await t.throwsAsync(callSendFile(t, sender, file, { signal: controller.signal }), expected)
  await t.throwsAsync(callSendFile(t, socketFd(sender), missing, { signal: controller.signal }), expected, 'fd target')
  await t.throwsAsync(callSendFile(t, sender, '/dev/zero', { signal: controller.signal, length: 10 }), expected, 'fallback source')
  t.deepEqual(fdsOpenOn(file), [])
  t.is(getEventListeners(controller.signal, 'abort').length, 0)
  sender.end('after')
  t.is((await received).toString(), 'after', 'not a byte of the file, and the socket stays usable')
})

linuxTest('aborting a sendFile still queued behind pending writes rejects at once and sends none of the file', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'queued.bin', data(100_000, 20))
  const backlog = data(8 * MiB, 9)
  const { sender, receiver } = await unixPair(t, dir)
  sender.write(backlog)
  const controller = new AbortController()
  const sending = callSendFile(t, sender, file, { signal: controller.signal })
  await tick(50)
  t.true(await isPending(sending))
  controller.abort()
  await t.throwsAsync(within(sending, BOUND, 'sendFile after abort'), { name: 'AbortError', code: 'ABORT_ERR' })
  t.is(getEventListeners(controller.signal, 'abort').length, 0)
  sender.end('after')
  const received = await within(collectHash(receiver), BOUND, 'the peer')
  const expected = Buffer.concat([backlog, Buffer.from('after')])
  t.deepEqual(received, { sha256: sha256(expected), bytes: expected.length })
  t.deepEqual(fdsOpenOn(file), [])
})

for (const [what, setup] of [
  ['a TLS socket', async (t: ExecutionContext) => ({ ...(await tlsPair(t)), source: sparseFile(tempDir(t), 'big', STALL_SIZE), options: {} })],
  ['TCP from /dev/zero', async (t: ExecutionContext) => ({ ...(await tcpPair(t)), source: '/dev/zero', options: { length: STALL_SIZE } })],
] as const) {
  linuxTest(`aborting a stalled stream-fallback transfer to ${what} rejects promptly with AbortError and removes its listener`, async (t) => {
    const { sender, receiver, source, options } = await setup(t)
    receiver.on('error', () => {})
    const controller = new AbortController()
    let progress = 0
    const sending = callSendFile(t, sender, source, { ...options, signal: controller.signal, onProgress: (bytes: number) => (progress = bytes) })
    t.true(await waitUntilStalled(() => progress), 'the transfer stalls on the paused peer')
    t.true(await isPending(sending))
    controller.abort()
    await t.throwsAsync(within(sending, 10_000, 'sendFile after abort'), { name: 'AbortError', code: 'ABORT_ERR' })
    t.is(getEventListeners(controller.signal, 'abort').length, 0)
    if (source !== '/dev/zero') t.deepEqual(fdsOpenOn(source), [])
  })
}

test('a completed or failed sendFile leaves no abort listener on its signal', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'done.bin', data(3 * MiB, 21))
  const { sender, receiver } = await tcpPair(t)
  const received = collectHash(receiver)
  const controller = new AbortController()
  t.is(await callSendFile(t, sender, file, { signal: controller.signal }), 3 * MiB)
  await t.throwsAsync(callSendFile(t, sender, path.join(dir, 'missing'), { signal: controller.signal }), { code: 'ENOENT' })
  t.is(await callSendFile(t, socketFd(sender), file, { signal: controller.signal, length: 10 }), 10)
  t.is(getEventListeners(controller.signal, 'abort').length, 0)
  sender.end()
  t.is((await received).bytes, 3 * MiB + 10)
})

// ---------------------------------------------------------------------------------------------
// onProgress.

function checkProgress(t: ExecutionContext, calls: Array<[number, number]>, total: number, expectedTotal: number, label: string): void {
  t.true(calls.length > 0, `${label}: onProgress was called`)
  if (calls.length === 0) return
  t.true(calls.length >= Math.ceil(total / (2 * MiB)), `${label}: ${calls.length} calls for ${total} bytes, at least one per 2 MiB`)
  let previous = 0
  for (const [bytes, reportedTotal] of calls) {
    t.is(reportedTotal, expectedTotal, `${label}: total`)
    t.true(bytes > previous, `${label}: ${bytes} follows ${previous}: cumulative and increasing`)
    t.true(bytes - previous <= 2 * MiB, `${label}: ${bytes} follows ${previous}: no 2 MiB chunk without a report (${calls.map(([b]) => b).join(', ')})`)
    previous = bytes
  }
  t.is(calls[calls.length - 1][0], total, `${label}: the final call is the total`)
}

for (const transport of transports) {
  test(`over ${transport.name}, onProgress reports increasing cumulative bytes at least once per 2 MiB, ending at the total`, async (t) => {
    const dir = tempDir(t)
    const contents = data(13 * MiB + 123, 22)
    const file = writeFixture(dir, 'progress.bin', contents)
    const { sender, receiver } = await transport.pair(t, dir)
    const received = collectHash(receiver)
    const whole: Array<[number, number]> = []
    t.is(await callSendFile(t, sender, file, { onProgress: (bytes: number, total: number) => whole.push([bytes, total]) }), contents.length)
    checkProgress(t, whole, contents.length, contents.length, 'whole file')
    const range: Array<[number, number]> = []
    t.is(
      await callSendFile(t, sender, file, { offset: MiB + 1, length: 5 * MiB, onProgress: (bytes: number, total: number) => range.push([bytes, total]) }),
      5 * MiB,
    )
    checkProgress(t, range, 5 * MiB, 5 * MiB, 'offset and length')
    const pastEnd: Array<[number, number]> = []
    t.is(
      await callSendFile(t, sender, file, { offset: 12 * MiB, length: 4 * MiB, onProgress: (bytes: number, total: number) => pastEnd.push([bytes, total]) }),
      MiB + 123,
    )
    checkProgress(t, pastEnd, MiB + 123, MiB + 123, 'length past the end: total is what remains')
    sender.end()
    const expected = Buffer.concat([contents, contents.subarray(MiB + 1, 6 * MiB + 1), contents.subarray(12 * MiB)])
    t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  })
}

linuxTest('onProgress on a stalled transfer reports what went out so far, then the total', async (t) => {
  const dir = tempDir(t)
  const big = sparseFile(dir, 'big', 32 * MiB)
  const { sender, receiver } = await tcpPair(t)
  const calls: Array<[number, number]> = []
  const sending = callSendFile(t, sender, big, { onProgress: (bytes: number, total: number) => calls.push([bytes, total]) })
  t.true(await waitUntilStalled(() => calls[calls.length - 1]?.[0] ?? 0), 'progress reported while the transfer stalls')
  t.true(await isPending(sending))
  t.true(calls[calls.length - 1][0] < 32 * MiB)
  const received = collectHash(receiver)
  t.is(await within(sending, BOUND, 'sendFile'), 32 * MiB)
  checkProgress(t, calls, 32 * MiB, 32 * MiB, 'stalled then drained')
  sender.end()
  t.is((await within(received, BOUND, 'the peer')).bytes, 32 * MiB)
})

// Serial, so that it runs alone: the race it looks for (a partial send followed by a full one, without EAGAIN in
// between) depends on timing. A correct implementation never fails it; a faulty one fails it often, not always.
linuxTest.serial(
  'onProgress never lets 2 MiB go by without a report, even when the socket takes partial chunks (60 transfers of 64 MiB over TCP)',
  async (t) => {
    const dir = tempDir(t)
    const big = sparseFile(dir, 'big', STALL_SIZE)
    const gaps: string[] = []
    for (let round = 0; round < 60; round++) {
      const { sender, receiver } = await tcpPair(t)
      // A reader as fast as possible (it discards), so that the sender often gets partial chunks without EAGAIN.
      const ended = new Promise((resolve) => receiver.once('end', resolve))
      receiver.resume()
      const calls: number[] = []
      t.is(await within(callSendFile(t, sender, big, { onProgress: (bytes: number) => calls.push(bytes) }), BOUND, 'sendFile'), STALL_SIZE)
      sender.end()
      await within(ended, BOUND, 'the peer')
      t.is(receiver.bytesRead, STALL_SIZE)
      let previous = 0
      for (const bytes of calls) {
        if (bytes - previous > 2 * MiB) gaps.push(`round ${round}: ${previous} -> ${bytes} (${((bytes - previous) / MiB).toFixed(2)} MiB without a report)`)
        previous = bytes
      }
      t.is(previous, STALL_SIZE)
      sender.destroy()
      receiver.destroy()
    }
    t.deepEqual(gaps, [], 'every 2 MiB chunk gets a progress report')
  },
)

test('onProgress to a regular file fd and through the TLS fallback reports at least once per 2 MiB, ending at the total', async (t) => {
  const dir = tempDir(t)
  const contents = data(7 * MiB + 9, 23)
  const file = writeFixture(dir, 'progress.bin', contents)
  const out = openForTest(t, path.join(dir, 'out.bin'), 'w')
  const toFile: Array<[number, number]> = []
  t.is(await callSendFile(t, out, file, { onProgress: (bytes: number, total: number) => toFile.push([bytes, total]) }), contents.length)
  checkProgress(t, toFile, contents.length, contents.length, 'to a file')
  t.is(sha256(fs.readFileSync(path.join(dir, 'out.bin'))), sha256(contents))

  const { sender, receiver } = await tlsPair(t)
  const received = collectHash(receiver)
  const overTls: Array<[number, number]> = []
  t.is(await callSendFile(t, sender, file, { onProgress: (bytes: number, total: number) => overTls.push([bytes, total]) }), contents.length)
  checkProgress(t, overTls, contents.length, contents.length, 'over TLS')
  sender.end()
  t.deepEqual(await within(received, BOUND, 'the TLS peer'), { sha256: sha256(contents), bytes: contents.length })
})

linuxTest('onProgress total is -1 for sources of unknown size: a FIFO and /proc files', async (t) => {
  const dir = tempDir(t)
  const payload = data(3 * MiB + 77, 24)
  const { fifo } = await fifoWithWriter(t, dir, 'progress.fifo', payload)
  const { sender, receiver } = await unixPair(t, dir)
  const received = collect(receiver)
  const fromFifo: Array<[number, number]> = []
  t.is(
    await within(callSendFile(t, sender, fifo, { onProgress: (bytes: number, total: number) => fromFifo.push([bytes, total]) }), BOUND, 'sendFile from a FIFO'),
    payload.length,
  )
  checkProgress(t, fromFifo, payload.length, -1, 'FIFO')

  const cmdline = fs.readFileSync('/proc/self/cmdline')
  const fromProc: Array<[number, number]> = []
  t.is(await callSendFile(t, sender, '/proc/self/cmdline', { onProgress: (bytes: number, total: number) => fromProc.push([bytes, total]) }), cmdline.length)
  checkProgress(t, fromProc, cmdline.length, -1, '/proc/self/cmdline')

  const version = fs.readFileSync('/proc/version')
  const fromVersion: Array<[number, number]> = []
  t.is(await callSendFile(t, sender, '/proc/version', { onProgress: (bytes: number, total: number) => fromVersion.push([bytes, total]) }), version.length)
  checkProgress(t, fromVersion, version.length, -1, '/proc/version')
  sender.end()
  t.is(sha256(await within(received, BOUND, 'the peer')), sha256(Buffer.concat([payload, cmdline, version])))
})

linuxTest('a throwing onProgress rejects sendFile with that very error, zero-copy or streamed', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'throw.bin', data(6 * MiB, 25))
  const boom = new Error('progress callback failed')
  const throwing = () => {
    throw boom
  }
  const throwingLater = (bytes: number) => {
    if (bytes > 2 * MiB) throw boom
  }

  const tcp = await tcpPair(t)
  collectHash(tcp.receiver).catch(() => {})
  t.is(await rejectionOf(callSendFile(t, tcp.sender, file, { onProgress: throwing })), boom, 'sendfile, first call throws')
  t.is(await rejectionOf(callSendFile(t, tcp.sender, file, { onProgress: throwingLater })), boom, 'sendfile, a later call throws')
  t.is(await rejectionOf(callSendFile(t, tcp.sender, file, { length: 10, onProgress: throwing })), boom, 'sendfile, the only (final) call throws')

  const out = openForTest(t, path.join(dir, 'out'), 'w')
  t.is(await rejectionOf(callSendFile(t, out, file, { onProgress: throwingLater })), boom, 'to a file fd')

  const tls = await tlsPair(t)
  collectHash(tls.receiver).catch(() => {})
  t.is(await rejectionOf(callSendFile(t, tls.sender, file, { onProgress: throwing })), boom, 'TLS stream fallback')
  t.is(
    await rejectionOf(callSendFile(t, tcp.sender, '/dev/zero', { length: 3 * MiB, onProgress: throwingLater })),
    boom,
    'stream fallback, a later call throws',
  )
  t.deepEqual(fdsOpenOn(file), [])
})

// ---------------------------------------------------------------------------------------------
// Zero-copy and the stream fallback, as transferChannel reports them.

/**
 * The one report of `target` among `reports` published from index `from` on. Fd numbers are shared by the tests that run
 * concurrently in this process, so for an fd target pass the index taken just before the call, while the fd is open.
 */
function onlyReport(t: ExecutionContext, reports: TransferReport[], target: unknown, from = 0): TransferReport {
  const mine = reportsFor(reports.slice(from), target)
  t.is(mine.length, 1, 'one report per sendFile')
  return mine[0]
}

for (const transport of transports) {
  test(`over ${transport.name}, transferChannel reports method sendfile, zeroCopy true and the bytes, once per call`, async (t) => {
    const dir = tempDir(t)
    const contents = data(2 * MiB + 5, 26)
    const file = writeFixture(dir, 'zero-copy.bin', contents)
    const reports = captureReports(t)
    const { sender, receiver } = await transport.pair(t, dir)
    const received = collectHash(receiver)
    t.is(await callSendFile(t, sender, file), contents.length)
    const report = onlyReport(t, reports, sender)
    t.like(report, { operation: 'sendFile', method: 'sendfile', zeroCopy: true, bytes: contents.length, target: sender })
    t.is(report.reason, undefined)
    t.is(report.error, undefined)

    const fd = socketFd(sender)
    const from = reports.length
    t.is(await callSendFile(t, fd, file, { length: 5 }), 5)
    t.like(onlyReport(t, reports, fd, from), { operation: 'sendFile', method: 'sendfile', zeroCopy: true, bytes: 5, target: fd })
    sender.end()
    t.is((await received).bytes, contents.length + 5)
  })
}

test('a TLS socket gets the same bytes through the stream fallback, in order with its writes, and the report says why', async (t) => {
  const dir = tempDir(t)
  const contents = data(3 * MiB + 11, 27)
  const file = writeFixture(dir, 'tls.bin', contents)
  const fd = openForTest(t, file)
  fs.readSync(fd, Buffer.alloc(1000), 0, 1000, null) // position 1000
  const reports = captureReports(t)
  const { sender, receiver } = await tlsPair(t)
  t.is(socketFd(sender), -1)
  const received = collectHash(receiver)
  sender.write('head')
  const first = callSendFile(t, sender, file)
  sender.write('mid')
  const second = callSendFile(t, sender, fd, { offset: 5, length: MiB })
  t.deepEqual(await within(Promise.all([first, second]), BOUND, 'sendFile over TLS'), [contents.length, MiB])
  sender.end('tail')
  const expected = Buffer.concat([Buffer.from('head'), contents, Buffer.from('mid'), contents.subarray(5, 5 + MiB), Buffer.from('tail')])
  t.deepEqual(await within(received, BOUND, 'the TLS peer'), { sha256: sha256(expected), bytes: expected.length })
  t.is(byteAtPosition(fd), contents[1000], 'the fd source position did not move')
  const mine = reportsFor(reports, sender)
  t.is(mine.length, 2)
  for (const report of mine) {
    t.like(report, { operation: 'sendFile', method: 'stream', zeroCopy: false })
    t.true(typeof report.reason === 'string' && report.reason.length > 0, `a reason: ${report.reason}`)
    t.is(report.error, undefined)
  }
  t.deepEqual(
    mine.map((report) => report.bytes),
    [contents.length, MiB],
  )
})

linuxTest('a FIFO source is streamed, whole or by offset and length, and the report says why', async (t) => {
  const dir = tempDir(t)
  const payload = data(1 * MiB + 333, 28)
  const reports = captureReports(t)
  const { sender, receiver } = await unixPair(t, dir)
  const received = collectHash(receiver)
  const whole = await fifoWithWriter(t, dir, 'whole.fifo', payload)
  t.is(await within(callSendFile(t, sender, whole.fifo), BOUND, 'sendFile from a FIFO'), payload.length)
  const ranged = await fifoWithWriter(t, dir, 'ranged.fifo', payload)
  t.is(await within(callSendFile(t, sender, ranged.fifo, { offset: 300_001, length: 500_000 }), BOUND, 'sendFile from a FIFO with a range'), 500_000)
  const short = await fifoWithWriter(t, dir, 'short.fifo', payload)
  t.is(await within(callSendFile(t, sender, short.fifo, { offset: 1 * MiB, length: MiB }), BOUND, 'sendFile from a FIFO past its end'), 333)
  sender.end()
  const expected = Buffer.concat([payload, payload.subarray(300_001, 800_001), payload.subarray(MiB)])
  t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
  const mine = reportsFor(reports, sender)
  t.is(mine.length, 3)
  for (const report of mine) {
    t.like(report, { method: 'stream', zeroCopy: false })
    t.true(typeof report.reason === 'string' && report.reason.length > 0)
  }
})

linuxTest('a /proc file is streamed with the same bytes readFileSync gets, and the report says why', async (t) => {
  const reports = captureReports(t)
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  const expected = fs.readFileSync('/proc/self/cmdline')
  t.true(expected.length > 0)
  t.is(await callSendFile(t, sender, '/proc/self/cmdline'), expected.length)
  t.is(await callSendFile(t, sender, '/proc/self/cmdline', { offset: 2, length: 5 }), 5)
  sender.end()
  t.is(sha256(await received), sha256(Buffer.concat([expected, expected.subarray(2, 7)])))
  const mine = reportsFor(reports, sender)
  t.is(mine.length, 2)
  for (const report of mine) {
    t.like(report, { method: 'stream', zeroCopy: false })
    t.true(typeof report.reason === 'string' && report.reason.length > 0, `a reason: ${report.reason}`)
  }
})

linuxTest('/proc/version (a /proc file the kernel can splice) arrives with the same bytes readFileSync gets', async (t) => {
  const { sender, receiver } = await unixPair(t, tempDir(t))
  const received = collect(receiver)
  const expected = fs.readFileSync('/proc/version')
  t.is(await callSendFile(t, sender, '/proc/version'), expected.length)
  t.is(await callSendFile(t, sender, '/proc/version', { offset: 3, length: 4 }), 4)
  sender.end()
  t.is(sha256(await received), sha256(Buffer.concat([expected, expected.subarray(3, 7)])))
})

test('/dev/zero with a length is streamed as that many zero bytes, to a socket and to a raw fd', async (t) => {
  const dir = tempDir(t)
  const reports = captureReports(t)
  const { sender, receiver } = await tcpPair(t)
  const received = collectHash(receiver)
  t.is(await callSendFile(t, sender, '/dev/zero', { length: MiB + 3 }), MiB + 3)
  t.is(await callSendFile(t, sender, '/dev/zero', { offset: 10, length: 7 }), 7)
  sender.end()
  t.deepEqual(await received, { sha256: zeroHash(MiB + 10), bytes: MiB + 10 })
  for (const report of reportsFor(reports, sender)) {
    t.like(report, { method: 'stream', zeroCopy: false })
    t.true(typeof report.reason === 'string' && report.reason.length > 0)
  }
  const out = openForTest(t, path.join(dir, 'zeros'), 'w')
  const from = reports.length
  t.is(await callSendFile(t, out, '/dev/zero', { length: 300_000 }), 300_000)
  t.like(onlyReport(t, reports, out, from), { method: 'stream', zeroCopy: false, bytes: 300_000 })
  t.is(sha256(fs.readFileSync(path.join(dir, 'zeros'))), zeroHash(300_000))
})

linuxTest('fallback: false rejects with ERR_SENDFILE_UNSUPPORTED before any byte, and the socket stays usable', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'plain.bin', data(100_000, 29))
  const reports = captureReports(t)
  const expected = { code: 'ERR_SENDFILE_UNSUPPORTED' }

  const tls = await tlsPair(t)
  const tlsReceived = collect(tls.receiver)
  await t.throwsAsync(callSendFile(t, tls.sender, file, { fallback: false }), expected, 'TLS')
  tls.sender.end('after')
  t.is((await within(tlsReceived, BOUND, 'the TLS peer')).toString(), 'after')
  t.like(onlyReport(t, reports, tls.sender), { zeroCopy: false })

  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  await t.throwsAsync(callSendFile(t, sender, '/dev/zero', { length: 10, fallback: false }), expected, 'a character device')
  const fifo = await fifoWithWriter(t, dir, 'refused.fifo', data(1000, 30))
  await t.throwsAsync(within(callSendFile(t, sender, fifo.fifo, { fallback: false }), BOUND, 'sendFile from a FIFO'), expected, 'a FIFO')
  await t.throwsAsync(callSendFile(t, sender, '/proc/self/cmdline', { fallback: false }), expected, 'a /proc file the kernel cannot splice')
  await t.throwsAsync(callSendFile(t, socketFd(sender), '/dev/zero', { length: 10, fallback: false }), expected, 'fd target')
  sender.end('after')
  t.is((await within(received, BOUND, 'the peer')).toString(), 'after', 'the peer received nothing but the later write')
})

// ---------------------------------------------------------------------------------------------
// Argument errors: Node-style, always as a rejected promise.

test('a bad target rejects with a TypeError ERR_INVALID_ARG_TYPE', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'f', data(10, 31))
  const udp = dgram.createSocket('udp4')
  t.teardown(() => udp.close())
  const server = net.createServer()
  const targets: Array<[string, unknown]> = [
    ['a dgram socket', udp],
    ['a net.Server', server],
    ['a plain object', {}],
    ['an object with an fd', { fd: 1 }],
    ['a string', '3'],
    ['null', null],
    ['undefined', undefined],
    ['a bigint', 3n],
  ]
  for (const [what, target] of targets) {
    await t.throwsAsync(callSendFile(t, target, file), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, what)
  }
  for (const target of [-1, 2 ** 31, Infinity]) {
    await t.throwsAsync(callSendFile(t, target, file), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, `fd ${target}`)
  }
})

linuxTest('bad options reject with Node-style errors and send nothing', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'f', data(1000, 32))
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  const cases: Array<[string, unknown, { instanceOf: new (...args: never[]) => Error; code: string }]> = [
    ['negative offset', { offset: -1 }, { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }],
    ['negative length', { length: -5 }, { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }],
    ['offset above MAX_SAFE_INTEGER', { offset: 2 ** 53 }, { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }],
    ['infinite length', { length: Infinity }, { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }],
    ['string offset', { offset: '1' }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['bigint length', { length: 10n }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['null offset', { offset: null }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['signal not an AbortSignal', { signal: {} }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['onProgress not a function', { onProgress: 'yes' }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['fallback not a boolean', { fallback: 'no' }, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['options a string', 'fast', { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['options a number', 42, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
    ['options null', null, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }],
  ]
  for (const [what, options, expected] of cases) {
    await t.throwsAsync(callSendFile(t, sender, file, options), expected, what)
    await t.throwsAsync(callSendFile(t, socketFd(sender), file, options), expected, `${what}, fd target`)
  }
  sender.end()
  t.is((await received).length, 0)
  t.deepEqual(fdsOpenOn(file), [])
})

test('a non-integer or NaN offset or length rejects with a Node-style argument error naming the option, and sends nothing', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'f', data(1000, 33))
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  const cases: Array<[string, SendFileOptions, string]> = [
    ['offset 1.5', { offset: 1.5 }, 'options.offset'],
    ['length 0.5', { length: 0.5 }, 'options.length'],
    ['offset NaN', { offset: NaN }, 'options.offset'],
    ['length -0.5', { length: -0.5 }, 'options.length'],
  ]
  for (const [what, options, name] of cases) {
    const error = await rejectionOf(callSendFile(t, sender, file, options))
    // As Node's own validateInteger answers: RangeError ERR_OUT_OF_RANGE ("must be an integer").
    t.true(error instanceof RangeError && error.code === 'ERR_OUT_OF_RANGE', `${what}: ${error.name} ${error.code}`)
    t.true(error.message.includes(`"${name}"`), `${what}: the message names ${name}: ${error.message}`)
  }
  const getter = new Error('getter threw')
  const throwingOptions = Object.defineProperty({}, 'offset', {
    get() {
      throw getter
    },
  })
  t.is(await rejectionOf(callSendFile(t, sender, file, throwingOptions)), getter, 'even a throwing options getter rejects instead of throwing')
  sender.end()
  t.is((await received).length, 0)
})

test('a bad source rejects: wrong type ERR_INVALID_ARG_TYPE, missing file ENOENT with its path, directory EISDIR, closed FileHandle EBADF', async (t) => {
  const dir = tempDir(t)
  const { sender, receiver } = await tcpPair(t)
  const received = collect(receiver)
  for (const [what, source] of [
    ['null', null],
    ['a plain object', {}],
    ['a Buffer', Buffer.from('/etc/hostname')],
    ['undefined', undefined],
  ] as Array<[string, unknown]>) {
    await t.throwsAsync(callSendFile(t, sender, source), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, what)
  }
  await t.throwsAsync(callSendFile(t, sender, -3), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, 'negative fd source')
  await t.throwsAsync(callSendFile(t, sender, 'a\u0000b'), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' }, 'a path with a NUL byte')
  await t.throwsAsync(callSendFile(t, sender, new URL('http://example.com/file')), { instanceOf: TypeError }, 'a non-file URL')

  const missing = path.join(dir, 'missing.bin')
  const enoent = await rejectionOf(callSendFile(t, sender, missing))
  t.like(enoent, { code: 'ENOENT', path: missing })
  const enoentUrl = await rejectionOf(callSendFile(t, sender, pathToFileURL(missing)))
  t.like(enoentUrl, { code: 'ENOENT', path: missing })
  const enoentFd = await rejectionOf(callSendFile(t, socketFd(sender), missing))
  t.like(enoentFd, { code: 'ENOENT', path: missing }, 'fd target')

  const eisdir = await rejectionOf(callSendFile(t, sender, dir))
  t.like(eisdir, { code: 'EISDIR', path: dir })
  const dirFd = openForTest(t, dir)
  t.like(await rejectionOf(callSendFile(t, sender, dirFd)), { code: 'EISDIR' }, 'a directory fd')
  t.like(await rejectionOf(callSendFile(t, socketFd(sender), dir)), { code: 'EISDIR', path: dir }, 'fd target')

  const handle = await fs.promises.open(writeFixture(dir, 'closed', data(10, 34)))
  await handle.close()
  t.like(await rejectionOf(callSendFile(t, sender, handle)), { code: 'EBADF' }, 'closed FileHandle')

  sender.end('still fine')
  t.is((await received).toString(), 'still fine')
  t.false(fs.existsSync(missing), 'sendFile never creates its source')
})

// ---------------------------------------------------------------------------------------------
// Raw fd targets.

test('a raw fd of a Unix socket is a target: exact bytes, and the socket fd is not closed', async (t) => {
  const dir = tempDir(t)
  const contents = data(5 * MiB + 1, 35)
  const file = writeFixture(dir, 'raw.bin', contents)
  const { sender, receiver } = await unixPair(t, dir)
  const fd = socketFd(sender)
  const received = collectHash(receiver)
  t.is(await within(callSendFile(t, fd, file), BOUND, 'sendFile to a raw socket fd'), contents.length)
  t.is(await callSendFile(t, fd, openForTest(t, file), { offset: 9, length: 11 }), 11)
  t.is(socketFd(sender), fd)
  sender.end('end')
  const expected = Buffer.concat([contents, contents.subarray(9, 20), Buffer.from('end')])
  t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(expected), bytes: expected.length })
})

test('a pipe is a target, as a raw fd and as the net.Socket around it', async (t) => {
  const dir = tempDir(t)
  const contents = data(3 * MiB + 17, 36)
  const file = writeFixture(dir, 'piped.bin', contents)
  const byFd = hashingChild(t)
  t.is(await within(callSendFile(t, socketFd(byFd.stdin), file), BOUND, 'sendFile to a pipe fd'), contents.length)
  byFd.stdin.end()
  t.is(await within(byFd.digest, BOUND, 'sha256sum'), sha256(contents))

  const bySocket = hashingChild(t)
  bySocket.stdin.write('head')
  t.is(await within(callSendFile(t, bySocket.stdin, file, { offset: 1 }), BOUND, 'sendFile to a pipe socket'), contents.length - 1)
  bySocket.stdin.end('tail')
  t.is(await within(bySocket.digest, BOUND, 'sha256sum'), sha256(Buffer.concat([Buffer.from('head'), contents.subarray(1), Buffer.from('tail')])))
})

test('a regular file fd opened for writing is a target: bytes land at its position, which then follows them', async (t) => {
  const dir = tempDir(t)
  const contents = data(2 * MiB + 5, 37)
  const file = writeFixture(dir, 'source.bin', contents)
  const destination = path.join(dir, 'destination.bin')
  const out = openForTest(t, destination, 'w')
  fs.writeSync(out, 'head')
  t.is(await callSendFile(t, out, file, { offset: 7, length: MiB }), MiB)
  fs.writeSync(out, 'mid')
  t.is(await callSendFile(t, out, file), contents.length)
  fs.writeSync(out, 'tail')
  const expected = Buffer.concat([Buffer.from('head'), contents.subarray(7, 7 + MiB), Buffer.from('mid'), contents, Buffer.from('tail')])
  t.is(sha256(fs.readFileSync(destination)), sha256(expected))
})

linuxTest('a FIFO source streams to a raw socket fd target', async (t) => {
  const dir = tempDir(t)
  const payload = data(700_001, 38)
  const { fifo } = await fifoWithWriter(t, dir, 'to-fd.fifo', payload)
  const { sender, receiver } = await unixPair(t, dir)
  const received = collectHash(receiver)
  t.is(await within(callSendFile(t, socketFd(sender), fifo), BOUND, 'sendFile from a FIFO to an fd'), payload.length)
  sender.end()
  t.deepEqual(await within(received, BOUND, 'the peer'), { sha256: sha256(payload), bytes: payload.length })
})

// ---------------------------------------------------------------------------------------------
// Sizes × ranges.

const SIZES = [1, 42, 1025, 4097, 32769]
const matrixTargets: Array<{
  name: string
  pair: (t: ExecutionContext, dir: string) => Promise<SocketPair>
  target: (pair: SocketPair) => net.Socket | number
}> = [
  { name: 'TCP', pair: (t) => tcpPair(t), target: (pair) => pair.sender },
  { name: 'a Unix socket', pair: unixPair, target: (pair) => pair.sender },
  { name: 'a raw Unix socket fd', pair: unixPair, target: (pair) => socketFd(pair.sender) },
]

for (const transport of matrixTargets) {
  for (const size of SIZES) {
    test(`over ${transport.name}, a ${size}-byte file arrives exactly for every offset and length`, async (t) => {
      const dir = tempDir(t)
      const contents = data(size, size)
      const file = writeFixture(dir, `size-${size}.bin`, contents)
      const fd = openForTest(t, file)
      const pair = await transport.pair(t, dir)
      const target = transport.target(pair)
      const received = collect(pair.receiver)
      const expectedSlices: Buffer[] = []
      const labels: string[] = []
      for (const offset of [0, Math.max(1, Math.floor(size / 3))]) {
        for (const length of [undefined, size - 1, Math.floor(size / 2), size + 7]) {
          const options: SendFileOptions = {}
          if (offset !== 0) options.offset = offset
          if (length !== undefined) options.length = length
          const expected = contents.subarray(offset, length === undefined ? undefined : offset + length)
          const label = `offset ${offset}, length ${length}`
          // Alternate source kinds: a path and an fd.
          const source = expectedSlices.length % 2 === 0 ? file : fd
          t.is(await callSendFile(t, target, source, options), expected.length, `${label}: returned count`)
          expectedSlices.push(expected)
          labels.push(label)
        }
      }
      pair.sender.end()
      const all = await within(received, BOUND, 'the peer')
      let at = 0
      expectedSlices.forEach((expected, index) => {
        t.is(sha256(all.subarray(at, at + expected.length)), sha256(expected), `${labels[index]}: bytes`)
        at += expected.length
      })
      t.is(all.length, at, 'nothing more')
      t.is(byteAtPosition(fd), contents[0] ?? null, 'the fd source position never moved')
    })
  }
}

/** The open flags of one of this process's fds, as the kernel reports them. */
function fdFlags(fd: number): number {
  const line = fs
    .readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('flags:'))
  return Number.parseInt((line ?? '').slice('flags:'.length).trim(), 8)
}

linuxTest('an abort settles a sendFile blocked on a full blocking FIFO, and the fd keeps its flags', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'big.bin', pattern(4 * MiB, 83))
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  // A reader that never reads, and a writer opened without O_NONBLOCK: a write blocks when full.
  const reader = openForTest(t, fifo, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK)
  const writer = openForTest(t, fifo, fs.constants.O_WRONLY)
  const flagsBefore = fdFlags(writer)
  t.is(flagsBefore & fs.constants.O_NONBLOCK, 0)
  const controller = new AbortController()
  const transfer = sendFile(writer, file, { signal: controller.signal })
  transfer.catch(() => {})
  // Blocked: the pipe holds what fit, and the transfer's duplicate of the writer is open.
  t.true(await eventually(() => fdsOpenOn(fifo).length === 3), 'reader, writer and the transfer duplicate')
  t.true(await isPending(transfer))
  controller.abort()
  const error = (await within(rejectionOf(transfer), 5000, 'the aborted sendFile')) as NodeJS.ErrnoException & { bytesSent?: number }
  t.is(error.name, 'AbortError')
  t.true(await eventually(() => fdsOpenOn(fifo).length === 2), 'the duplicate is closed')
  t.is(fdFlags(writer), flagsBefore, 'O_NONBLOCK untouched')
  // Exactly what the transfer reports went into the pipe, and nothing more follows.
  let inPipe = 0
  const chunk = Buffer.alloc(64 * 1024)
  for (;;) {
    try {
      const read = fs.readSync(reader, chunk)
      if (read === 0) break
      inPipe += read
    } catch (readError) {
      if ((readError as NodeJS.ErrnoException).code === 'EAGAIN') break
      throw readError
    }
  }
  t.is(inPipe, error.bytesSent ?? -1)
})

test('sendFile(res.socket) after res.writeHead() sends the held header first, then the body', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(300_000, 89)
  const file = writeFixture(dir, 'body.bin', contents)
  const server = http.createServer(async (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': contents.length })
    await sendFile(res.socket as net.Socket, file)
    res.end()
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const port = (server.address() as net.AddressInfo).port
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  for (let request = 0; request < 2; request++) {
    const { status, body } = await within(
      new Promise<{ status: number | undefined; body: Buffer }>((resolve, reject) => {
        http
          .get({ port, host: '127.0.0.1', agent }, (res) => {
            const chunks: Buffer[] = []
            res.on('data', (chunk: Buffer) => chunks.push(chunk))
            res.once('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }))
            res.once('error', reject)
          })
          .once('error', reject)
      }),
      10_000,
      'the response',
    )
    t.is(status, 200)
    t.is(sha256(body), sha256(contents), `request ${request + 1} on the kept-alive connection`)
  }
})
