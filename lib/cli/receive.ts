/** `zerocopy receive <port>`: accept one connection and store what arrives, as `nc -l port > file` would. */
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as net from 'node:net'

import { type CommandSpec, type ParsedCommand, flag, parsePort, stringOption } from './args.js'
import { CommandFailure, EXIT_OK, UsageError } from './errors.js'
import { listen, urlHost } from './net.js'
import { printSummary, progressBar } from './progress.js'
import { interruptSignal } from './signals.js'

/**
 * Bytes the file stream may hold before the socket is paused: with the default 16 KiB every
 * 64 KiB socket read paused the socket; this lets reads pile up and go out as one writev.
 */
const FILE_BUFFER = 4 << 20

export const receiveSpec: CommandSpec = {
  name: 'receive',
  synopsis: '<port> [--host 127.0.0.1] [--out FILE|-] [--json]',
  summary: 'receive one file on a TCP port',
  description:
    'Accept one TCP connection on <port> and write everything that arrives to a file or stdout; close when the sender has finished and the bytes are written.',
  operands: ['<port>'],
  required: 1,
  options: {
    host: { type: 'string', placeholder: 'HOST', description: 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)' },
    out: { type: 'string', short: 'o', placeholder: 'FILE', description: "where to write: a file (created or truncated) or '-' for stdout (default '-')" },
    json: { type: 'boolean', description: 'print the summary as JSON' },
  },
  notes: [
    'Port 0 takes a free port. The address is printed on stderr (`listening on 127.0.0.1:PORT`) on a terminal, and always for port 0.',
    'With --out -, the summary goes to stderr, since stdout carries the data; a stdout that is a terminal is refused.',
  ],
}

export async function receiveCommand({ values, operands: [portText] }: ParsedCommand): Promise<number> {
  const port = parsePort(portText, 'the port')
  const host = stringOption(values, 'host') ?? '127.0.0.1'
  const out = stringOption(values, 'out') ?? '-'
  const toStdout = out === '-'
  if (toStdout && process.stdout.isTTY) throw new UsageError('stdout is a terminal: give --out FILE, or redirect stdout')
  // Opened before listening: an output that cannot be written fails before a sender connects.
  const destination: NodeJS.WritableStream & { destroy(): void } = toStdout
    ? process.stdout
    : (await fs.promises.open(out, 'w')).createWriteStream({ highWaterMark: FILE_BUFFER })
  const interrupt = interruptSignal()
  const server = net.createServer({ allowHalfOpen: true })
  let socket: net.Socket | undefined
  try {
    await listen(server, port, host)
    const address = server.address() as net.AddressInfo
    if (port === 0 || process.stderr.isTTY) process.stderr.write(`listening on ${urlHost(address.address)}:${address.port}\n`)
    ;[socket] = (await once(server, 'connection', { signal: interrupt.signal })) as [net.Socket]
    // One transfer per run: later connections are refused.
    server.close()
    const bar = progressBar(process.stderr, 'received')
    const started = performance.now()
    let bytes: number
    try {
      bytes = await receiveInto(socket, destination, (received) => bar.update(received), interrupt.signal)
      await flushed(destination, toStdout)
    } finally {
      bar.stop()
    }
    const seconds = (performance.now() - started) / 1000
    // Our FIN tells the sender the bytes are written, not merely received.
    socket.end()
    printSummary(toStdout ? process.stderr : process.stdout, { command: 'receive', bytes, seconds, method: 'stream', zeroCopy: false }, flag(values, 'json'))
    return EXIT_OK
  } finally {
    server.close()
    socket?.destroy()
    if (!toStdout) destination.destroy()
    interrupt.dispose()
  }
}

/**
 * Pipes `socket` into `destination` (with its backpressure) until the sender's FIN; resolves
 * with the byte count. Rejects with either side's error (a reset, EPIPE, ENOSPC), the
 * interruption, or a connection that closed without FIN.
 */
function receiveInto(socket: net.Socket, destination: NodeJS.WritableStream, onBytes: (received: number) => void, signal: AbortSignal): Promise<number> {
  return new Promise((resolve, reject) => {
    let received = 0
    const fail = (error: unknown) => {
      socket.unpipe(destination)
      reject(error)
    }
    signal.addEventListener('abort', () => socket.destroy(signal.reason as Error), { once: true })
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length
      onBytes(received)
    })
    socket.once('end', () => resolve(received))
    socket.once('error', fail)
    socket.once('close', () => fail(new CommandFailure(`the connection closed after ${received} bytes, before the sender finished`)))
    destination.once('error', fail)
    socket.pipe(destination, { end: false })
  })
}

/** Waits until everything written is out of the process: a file closed, stdout's queue drained. */
async function flushed(destination: NodeJS.WritableStream, isStdout: boolean): Promise<void> {
  if (isStdout) {
    // Writes complete in order: this one's callback runs once every earlier chunk is written.
    await new Promise<void>((resolve, reject) => destination.write('', (error) => (error ? reject(error) : resolve())))
    return
  }
  destination.end()
  await once(destination as fs.WriteStream, 'close')
}
