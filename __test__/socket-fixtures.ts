import { execFile, spawn, type ChildProcess } from 'node:child_process'
import * as fs from 'node:fs'
import type * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import type { ExecutionContext } from 'ava'

import { transferChannel, type TransferReport } from '..'

export const MiB = 1024 * 1024

function run(command: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 30_000 }, (error, _stdout, stderr) =>
      error ? reject(new Error(`${command} failed: ${error.message}\n${stderr}`)) : resolve(),
    )
  })
}

/** Settles like `promise`, or rejects when it has not settled after `ms` (a bound, never a threshold the test relies on). */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Whether `promise` is still pending after the current macrotask queue has run. */
export async function isPending(promise: Promise<unknown>): Promise<boolean> {
  let settled = false
  promise.then(
    () => (settled = true),
    () => (settled = true),
  )
  await new Promise((resolve) => setImmediate(resolve))
  return !settled
}

/** The rejection of `promise` (fails the test when it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<NodeJS.ErrnoException> {
  try {
    const value = await promise
    throw new Error(`expected a rejection, got ${String(value)}`)
  } catch (error) {
    return error as NodeJS.ErrnoException
  }
}

/** The fd numbers of this process that are open on `file`. */
export function fdsOpenOn(file: string): number[] {
  const real = fs.realpathSync(file)
  const found: number[] = []
  for (const entry of fs.readdirSync('/proc/self/fd')) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${entry}`) === real) found.push(Number(entry))
    } catch {
      // Closed between readdir and readlink.
    }
  }
  return found
}

/** Every TransferReport published while the test runs; filter by `target`, tests run concurrently. */
export function captureReports(t: ExecutionContext): TransferReport[] {
  const reports: TransferReport[] = []
  const listener = (report: TransferReport) => reports.push(report)
  transferChannel.subscribe(listener)
  t.teardown(() => {
    transferChannel.unsubscribe(listener)
  })
  return reports
}

export function reportsFor(reports: TransferReport[], target: unknown): TransferReport[] {
  return reports.filter((report) => report.target === target)
}

/** Records 'error' events, so that one is a failed assertion rather than a crash. */
export function recordErrors(t: ExecutionContext, emitter: NodeJS.EventEmitter): unknown[] {
  const errors: unknown[] = []
  const listener = (error: unknown) => errors.push(error)
  emitter.on('error', listener)
  t.teardown(() => {
    emitter.off('error', listener)
  })
  return errors
}

/** A sparse file of `size` zero bytes: big enough to stall on any socket buffer, free to create. */
export function sparseFile(dir: string, name: string, size: number): string {
  const file = path.join(dir, name)
  fs.closeSync(fs.openSync(file, 'w'))
  fs.truncateSync(file, size)
  return file
}

let certificate: Promise<{ key: Buffer; cert: Buffer }> | undefined

/** A self-signed certificate for CN=localhost, made once per test process with openssl in its own temp dir. */
export function selfSignedCertificate(): Promise<{ key: Buffer; cert: Buffer }> {
  certificate ??= (async () => {
    const dir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'sendfile-tls-'))
    try {
      const keyFile = path.join(dir, 'key.pem')
      const certFile = path.join(dir, 'cert.pem')
      await run('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', keyFile, '-out', certFile])
      return { key: fs.readFileSync(keyFile), cert: fs.readFileSync(certFile) }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })()
  return certificate
}

export interface TlsPair {
  /** The server's side of the connection: the sendFile target. */
  sender: tls.TLSSocket
  /** The client: the test reads from it (paused until `collect` resumes it). */
  receiver: tls.TLSSocket
}

/** A real TLS connection on 127.0.0.1 with a self-signed certificate the client trusts. */
export async function tlsPair(t: ExecutionContext): Promise<TlsPair> {
  const { key, cert } = await selfSignedCertificate()
  const server = tls.createServer({ key, cert })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve())
  })
  t.teardown(() => {
    server.close()
  })
  const accepted = new Promise<tls.TLSSocket>((resolve) => server.once('secureConnection', resolve))
  const receiver = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, ca: cert, servername: 'localhost' })
  receiver.pause()
  t.teardown(() => {
    receiver.destroy()
  })
  await within(
    new Promise<void>((resolve, reject) => {
      receiver.once('secureConnect', resolve)
      receiver.once('error', reject)
    }),
    20_000,
    'the TLS handshake',
  )
  const sender = await within(accepted, 20_000, 'the TLS accept')
  t.teardown(() => {
    sender.destroy()
  })
  server.close()
  return { sender, receiver }
}

/**
 * A FIFO at `dir/name` and a writer process that opens it, writes `data` (from a regular file)
 * and exits. Opening the FIFO for reading rendezvous with the writer whichever comes first.
 */
export async function fifoWithWriter(t: ExecutionContext, dir: string, name: string, data: Buffer): Promise<{ fifo: string; writer: ChildProcess }> {
  const fifo = path.join(dir, name)
  const source = path.join(dir, `${name}.data`)
  fs.writeFileSync(source, data)
  await run('mkfifo', [fifo])
  const writer = spawn('sh', ['-c', 'exec cat "$0" > "$1"', source, fifo], { stdio: ['ignore', 'ignore', 'ignore'] })
  t.teardown(() => {
    if (writer.exitCode === null && writer.signalCode === null) writer.kill()
  })
  return { fifo, writer }
}

/** A `sha256sum` child: its stdin is a pipe whose fd a test can write to; resolves with the hex digest of what it read. */
export function hashingChild(t: ExecutionContext): { stdin: net.Socket; digest: Promise<string> } {
  const child = spawn('sha256sum', [], { stdio: ['pipe', 'pipe', 'ignore'] })
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill()
  })
  let out = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk))
  const digest = new Promise<string>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code) => (code === 0 ? resolve(out.split(/\s/)[0]) : reject(new Error(`sha256sum exited with ${code}`))))
  })
  return { stdin: child.stdin as net.Socket, digest }
}

/**
 * Waits (bounded) until a transfer's progress stops moving for a full `quietMs`, which with a
 * paused peer means its socket buffers are full. Returns whether it stalled.
 */
export async function waitUntilStalled(progress: () => number, quietMs = 150, attempts = 60): Promise<boolean> {
  let last = progress()
  for (let i = 0; i < attempts; i++) {
    await new Promise((resolve) => setTimeout(resolve, quietMs))
    const now = progress()
    if (now === last && now > 0) return true
    last = now
  }
  return false
}

/** Polls `condition` every `everyMs` until it holds, at most `attempts` times; returns whether it held. */
export async function eventually(condition: () => boolean, everyMs = 50, attempts = 100): Promise<boolean> {
  for (let i = 0; i < attempts; i++) {
    if (condition()) return true
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  return condition()
}
