/**
 * The inline send: a small range already in the page cache goes out from the event loop at once
 * (an HTTP response's head with it), without a native job; a cold file or a full socket takes
 * (or continues on) the asynchronous driver, and the bytes are the same either way.
 */
import test, { type ExecutionContext } from 'ava'
import { execFileSync } from 'node:child_process'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as path from 'node:path'

import { type TransferReport, sendFile, serveFile, transferChannel } from '..'
import { collectHash, linuxTest, pattern, sha256, tcpPair, tempDir, unixPair } from './helpers'
import { type Reply, listen, request } from './http-fixtures'
import { eventually, waitUntilStalled } from './socket-fixtures'

/**
 * Every report published while `body` runs, and until its transfer's report came: a client can
 * have every byte before the server's send settles and reports (bounded wait).
 */
async function reportsDuring<T>(body: () => Promise<T>): Promise<{ result: T; reports: TransferReport[] }> {
  const reports: TransferReport[] = []
  const listener = (report: TransferReport) => reports.push(report)
  transferChannel.subscribe(listener)
  try {
    const result = await body()
    await eventually(() => reports.length > 0, 10, 500)
    return { result, reports }
  } finally {
    transferChannel.unsubscribe(listener)
  }
}

/** Evicts `file` from the page cache (written back first), so reading it must wait for the disk. */
function evict(file: string): void {
  const fd = fs.openSync(file, 'r+')
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  // GNU dd with iflag=nocache and count=0 asks the kernel to drop the file's cached pages (POSIX_FADV_DONTNEED).
  execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none'])
}

function residentBytes(file: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file]).toString().trim())
}

function httpServer(t: ExecutionContext, file: string): Promise<number> {
  return listen(
    t,
    http.createServer((req, res) => {
      serveFile(req, res, file).catch(() => res.destroy())
    }),
  )
}

function fetchBody(port: number): Promise<Reply> {
  return request(port, '/')
}

linuxTest.serial('a warm 16 KiB file: serveFile sends its head and body inline, and the client gets exact bytes', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'warm.bin')
  const data = pattern(16 * 1024, 3)
  fs.writeFileSync(file, data)
  fs.readFileSync(file)
  const port = await httpServer(t, file)
  const { result, reports } = await reportsDuring(() => fetchBody(port))
  t.is(result.status, 200)
  t.is(result.headers['content-length'], String(data.length))
  t.is(sha256(result.body), sha256(data))
  t.is(reports.length, 1)
  t.is(reports[0].method, 'sendfile')
  t.is(reports[0].inlineBytes, data.length, 'all of it from the event loop')
  t.is(reports[0].bytes, data.length)
})

linuxTest.serial('a cold file is never read on the event loop: the async driver sends it, bytes exact', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'cold.bin')
  const data = pattern(48 * 1024, 5)
  fs.writeFileSync(file, data)
  evict(file)
  t.is(residentBytes(file), 0, 'the file left the page cache (this test needs a disk-backed temp dir, not tmpfs)')
  const port = await httpServer(t, file)
  const { result, reports } = await reportsDuring(() => fetchBody(port))
  t.is(result.status, 200)
  t.is(sha256(result.body), sha256(data))
  t.is(reports.length, 1)
  t.is(reports[0].inlineBytes, undefined, 'not sent inline')
  t.is(reports[0].bytes, data.length)
  // Warm now: the next response goes inline.
  const again = await reportsDuring(() => fetchBody(port))
  t.is(sha256(again.result.body), sha256(data))
  t.is(again.reports[0].inlineBytes, data.length)
})

linuxTest.serial('a socket that is already full: the inline send stops at EAGAIN and the async driver finishes; every byte arrives in order', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'small.bin')
  const data = pattern(60 * 1024, 7)
  fs.writeFileSync(file, data)
  fs.readFileSync(file)
  // A Unix socket: its buffers hold a few hundred KiB, far less than the 64 sends below.
  const { sender: server, receiver: client } = await unixPair(t, dir)
  client.pause()
  const count = 64
  const reports: TransferReport[] = []
  const listener = (report: TransferReport) => reports.push(report)
  transferChannel.subscribe(listener)
  t.teardown(() => transferChannel.unsubscribe(listener))
  const sends = Array.from({ length: count }, () => sendFile(server, file))
  // The peer reads nothing: sends complete until the socket is full, then one waits for room.
  t.true(await waitUntilStalled(() => reports.length, 300), 'the sends stalled on a full socket')
  t.true(reports.length < count, `${reports.length} of ${count} sends completed before the socket filled`)
  const received = collectHash(client)
  client.resume()
  const totals = await Promise.all(sends)
  server.end()
  t.deepEqual(totals, Array(count).fill(data.length))
  t.deepEqual(await received, { bytes: count * data.length, sha256: sha256(Buffer.concat(Array(count).fill(data))) })
  t.is(reports.length, count)
  t.true(
    reports.some((report) => report.inlineBytes !== undefined && report.inlineBytes < data.length),
    'a send met the full socket and continued on the async driver',
  )
  t.true(
    reports.some((report) => report.inlineBytes === data.length),
    'and sends before it went out whole from the event loop',
  )
})

test('sendFile(socket, path) of a small warm file goes inline too, and the socket stays usable after it', async (t) => {
  const dir = tempDir(t)
  const file = path.join(dir, 'hello.txt')
  fs.writeFileSync(file, 'hello, inline\n')
  const { sender: server, receiver: client } = await tcpPair(t)
  const received = collectHash(client)
  server.write('before\n')
  const { result, reports } = await reportsDuring(() => sendFile(server, file))
  server.end('after\n')
  t.is(result, 14)
  t.deepEqual(await received, { bytes: 7 + 14 + 6, sha256: sha256('before\nhello, inline\nafter\n') })
  if (process.platform === 'linux') t.is(reports[0].inlineBytes, 14)
})
