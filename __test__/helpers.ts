import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import test, { type ExecutionContext, type Implementation } from 'ava'

/**
 * `test` where the test needs Linux (/proc/self/fd, /dev/shm, fd counts, FIFO and procfs
 * semantics), `test.skip` elsewhere: the macOS and FreeBSD CI jobs run the portable tests.
 */
type Declare = (title: string, implementation: Implementation<[]>) => void
const onLinux = process.platform === 'linux'
export const linuxTest: Declare & { serial: Declare } = Object.assign(onLinux ? test : test.skip, { serial: onLinux ? test.serial : test.serial.skip })

/** A system error's `errno` as Node reports it (negative), from this platform's numbers. */
export function errno(code: keyof typeof os.constants.errno): number {
  return -os.constants.errno[code]
}

export function sha256(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex')
}

/** Bytes that differ at every position, so a shifted or repeated range never hashes the same. */
export function pattern(size: number, seed = 1): Buffer {
  const data = Buffer.allocUnsafe(size)
  let state = seed >>> 0 || 1
  for (let i = 0; i < size; i++) {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    data[i] = state >>> 24
  }
  return data
}

/** A fresh directory removed when the test ends. */
export function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

export function writeFixture(dir: string, name: string, data: Buffer): string {
  const file = path.join(dir, name)
  fs.writeFileSync(file, data)
  return file
}

/** Opens `file` for the test's lifetime. */
export function openForTest(t: ExecutionContext, file: string, flags: fs.OpenMode = 'r'): number {
  const fd = fs.openSync(file, flags)
  t.teardown(() => {
    try {
      fs.closeSync(fd)
    } catch {
      // Closed by the test itself.
    }
  })
  return fd
}

export interface SocketPair {
  /** The connecting side; tests write through its fd. */
  sender: net.Socket
  /** The accepted side; tests read from it. */
  receiver: net.Socket
}

async function connectedPair(t: ExecutionContext, listenOn: net.ListenOptions, connect: (server: net.Server) => net.Socket): Promise<SocketPair> {
  const server = net.createServer({ pauseOnConnect: true })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(listenOn, () => resolve())
  })
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const sender = connect(server)
  await new Promise<void>((resolve, reject) => {
    sender.once('connect', resolve)
    sender.once('error', reject)
  })
  const receiver = await accepted
  server.close()
  t.teardown(() => {
    sender.destroy()
    receiver.destroy()
  })
  return { sender, receiver }
}

export function tcpPair(t: ExecutionContext): Promise<SocketPair> {
  return connectedPair(t, { host: '127.0.0.1', port: 0 }, (server) => net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port }))
}

export function unixPair(t: ExecutionContext, dir: string): Promise<SocketPair> {
  const socketPath = path.join(dir, `s-${crypto.randomBytes(4).toString('hex')}.sock`)
  return connectedPair(t, { path: socketPath }, () => net.connect({ path: socketPath }))
}

/** Everything the socket receives until the peer ends, as one buffer. */
export function collect(socket: net.Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.once('end', () => resolve(Buffer.concat(chunks)))
    socket.once('error', reject)
    socket.resume()
  })
}

/** Hashes everything the socket receives until the peer ends, without keeping it. */
export function collectHash(socket: net.Socket): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const hash = crypto.createHash('sha256')
    let bytes = 0
    socket.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      hash.update(chunk)
    })
    socket.once('end', () => resolve({ sha256: hash.digest('hex'), bytes }))
    socket.once('error', reject)
    socket.resume()
  })
}

export function tick(ms = 0): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** The next byte `fd` would read at its file position (which it then advances past). */
export function byteAtPosition(fd: number): number | null {
  const one = Buffer.alloc(1)
  return fs.readSync(fd, one, 0, 1, null) === 1 ? one[0] : null
}

export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length
}

/** Polls until the process's fd count is back to `baseline` (closes finish asynchronously), at most ~5 s. */
export async function fdsSettle(baseline: number): Promise<number> {
  let count = openFdCount()
  for (let attempt = 0; attempt < 100 && count > baseline; attempt++) {
    await tick(50)
    count = openFdCount()
  }
  return count
}
