/** `zerocopy send <file> <host:port>`: one file (or a range) over TCP with sendFile, as `nc host port < file` would. */
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as net from 'node:net'

import { sendFile } from '../../index.js'
import { type CommandSpec, type ParsedCommand, flag, integerOption, parseHostPort } from './args.js'
import { CommandFailure, EXIT_OK } from './errors.js'
import { printSummary, progressBar, watchTransfer } from './progress.js'
import { interruptSignal } from './signals.js'

export const sendSpec: CommandSpec = {
  name: 'send',
  synopsis: '<file> <host:port> [--offset N] [--length N] [--json]',
  summary: 'send a file to host:port over TCP',
  description: 'Connect to host:port, send the file with sendfile(2), half-close, and wait for the peer to close.',
  operands: ['<file>', '<host:port>'],
  required: 2,
  options: {
    offset: { type: 'string', placeholder: 'N', description: 'first byte of the file to send (default 0)' },
    length: { type: 'string', placeholder: 'N', description: 'bytes to send (default: to the end of the file)' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
  },
  notes: ['The other side: `zerocopy receive <port> --out <file>` (or any TCP listener, such as `nc -l`).'],
}

export async function sendCommand({ values, operands: [file, address] }: ParsedCommand): Promise<number> {
  const { host, port } = parseHostPort(address)
  const offset = integerOption(values, 'offset', 0)
  const length = integerOption(values, 'length', 0)
  // Opened before connecting: a missing file fails without bothering the peer.
  const source = await fs.promises.open(file, 'r')
  const bar = progressBar(process.stderr, 'sent')
  const interrupt = interruptSignal()
  let socket: net.Socket | undefined
  const transfer = watchTransfer('sendFile', () => socket)
  try {
    if (!(await source.stat()).isFile()) throw new CommandFailure(`'${file}' is not a regular file`)
    socket = await connect(host, port, interrupt.signal)
    const peerClosed = untilClosed(socket)
    // Awaited below; until then a reset must not count as an unhandled rejection (sendFile reports it).
    peerClosed.catch(() => {})
    const started = performance.now()
    const bytes = await sendFile(socket, source, { offset, length, signal: interrupt.signal, onProgress: (sent, total) => bar.update(sent, total) })
    // Half-close: the peer reads to end of stream, then closes its side when it has everything.
    socket.end()
    await peerClosed
    const seconds = (performance.now() - started) / 1000
    bar.stop()
    printSummary(process.stdout, transfer.summary('send', bytes, seconds), flag(values, 'json'))
    return EXIT_OK
  } finally {
    bar.stop()
    socket?.destroy()
    transfer.stop()
    interrupt.dispose()
    await source.close()
  }
}

/** A connected socket; rejects with the connection's error (ECONNREFUSED, ENOTFOUND) or on abort. */
async function connect(host: string, port: number, signal: AbortSignal): Promise<net.Socket> {
  const socket = net.connect({ host, port, signal })
  try {
    await once(socket, 'connect')
  } catch (error) {
    socket.destroy()
    throw error
  }
  return socket
}

/**
 * Resolves when the peer has closed the connection; rejects with the socket's error (a reset)
 * or the abort. Listening from the start keeps an early 'error' from going unhandled.
 */
function untilClosed(socket: net.Socket): Promise<void> {
  // Whatever the peer says back is not ours to print; reading it lets its FIN arrive.
  socket.resume()
  return new Promise((resolve, reject) => {
    socket.once('error', reject)
    socket.once('close', () => resolve())
  })
}
