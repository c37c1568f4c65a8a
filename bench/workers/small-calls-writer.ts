/**
 * The Node side of the small-calls scenario, in its own process: the same loop as
 * bench/c/small_calls.c, one small sendfileSync per chunk into a Unix socket drained by the C
 * sink, so the difference per call is the binding's overhead.
 *
 *   node small-calls-writer.js send <api|binding> <unix-path> <file> <chunks> <chunk> <warmup> <deadline>
 *     api: the public sendfileSync (validation, errors as exceptions); binding: the native
 *     function it wraps, called directly, to split the overhead between JS and napi.
 *     stdout: {"calls","eagain","bytes","wallNs","cpuUserUs","cpuSysUs"}
 *
 *   node small-calls-writer.js eagain <api|binding> <file> <calls> <chunk> <deadline>
 *     The cost of a call that finds the socket full (a Unix socket pair whose reader never
 *     reads): the EAGAIN path a sendfileSync loop takes whenever it outruns its peer.
 *     stdout: {"calls","wallNs"}
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { sendfileSync, socketFd } from '../..'
import * as binding from '../../binding.js'

const [command, flavor, ...rest] = process.argv.slice(2)

setTimeout(
  () => {
    process.stderr.write(`small-calls-writer ${command} ${flavor}: deadline passed\n`)
    process.exit(3)
  },
  Number(rest[rest.length - 1]) * 1000,
).unref()

/** One call; the bytes sent, or -1 for EAGAIN, either way the caller's loop looks the same. */
function makeCall(): (out: number, input: number, offset: number, count: number) => number {
  if (flavor === 'api') {
    return (out, input, offset, count) => {
      try {
        return sendfileSync(out, input, offset, count)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') return -1
        throw error
      }
    }
  }
  if (flavor === 'binding') {
    return (out, input, offset, count) => {
      const outcome = binding.sendfileSync(out, input, offset, count)
      // A number: the bytes, and nothing else to say (see lib/native.ts bytesOf).
      if (typeof outcome === 'number') return outcome
      if (outcome.errno === undefined) return outcome.bytes
      if (outcome.errno === os.constants.errno.EAGAIN) return -1
      throw new Error(`sendfile failed with errno ${outcome.errno}`)
    }
  }
  throw new Error(`unknown flavor ${flavor}`)
}

const call = makeCall()

function connected(socket: net.Socket): Promise<net.Socket> {
  return new Promise((resolve, reject) => socket.once('connect', () => resolve(socket)).once('error', reject))
}

async function send(): Promise<void> {
  const [socketPath, file, chunksText, chunkText, warmupText] = rest
  const chunks = Number(chunksText)
  const chunk = Number(chunkText)
  const warmup = Number(warmupText)
  const input = fs.openSync(file, 'r')
  const span = fs.fstatSync(input).size - (fs.fstatSync(input).size % chunk)
  const socket = await connected(net.connect(socketPath))
  const out = socketFd(socket)
  let calls = 0
  let eagain = 0
  let bytes = 0

  // Chunk `index` starts at (index * chunk) % span, as in the C loop. The loop is synchronous;
  // only a full socket makes it yield, and it resumes with the same chunk.
  let index = 0
  let done = 0
  async function run(until: number): Promise<void> {
    while (index < until) {
      const sent = call(out, input, ((index * chunk) % span) + done, chunk - done)
      if (sent < 0) {
        eagain++
        await new Promise((resolve) => setImmediate(resolve))
        continue
      }
      calls++
      bytes += sent
      done += sent
      if (done === chunk) {
        done = 0
        index++
      }
    }
  }

  await run(warmup)
  calls = 0
  eagain = 0
  const cpu = process.cpuUsage()
  const started = process.hrtime.bigint()
  await run(warmup + chunks)
  const wallNs = Number(process.hrtime.bigint() - started)
  const spent = process.cpuUsage(cpu)
  socket.end()
  await new Promise((resolve) => socket.once('close', resolve))
  fs.closeSync(input)
  process.stdout.write(`${JSON.stringify({ calls, eagain, bytes, wallNs, cpuUserUs: spent.user, cpuSysUs: spent.system })}\n`)
}

async function eagainOnly(): Promise<void> {
  const [file, callsText, chunkText] = rest
  const calls = Number(callsText)
  const chunk = Number(chunkText)
  const input = fs.openSync(file, 'r')
  const socketPath = path.join(os.tmpdir(), `zerocopy-sendfile-bench-${process.pid}-eagain.sock`)
  fs.rmSync(socketPath, { force: true })
  // pauseOnConnect: the accepted side never reads, so the writer fills up and stays full.
  const server = net.createServer({ pauseOnConnect: true })
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  const socket = await connected(net.connect(socketPath))
  const peer = await accepted
  const out = socketFd(socket)
  while (call(out, input, 0, chunk) >= 0) {
    // Filling the socket buffer.
  }
  const started = process.hrtime.bigint()
  for (let i = 0; i < calls; i++) {
    if (call(out, input, 0, chunk) !== -1) throw new Error('expected EAGAIN')
  }
  const wallNs = Number(process.hrtime.bigint() - started)
  socket.destroy()
  peer.destroy()
  server.close()
  fs.rmSync(socketPath, { force: true })
  fs.closeSync(input)
  process.stdout.write(`${JSON.stringify({ calls, wallNs })}\n`)
}

;(command === 'send' ? send() : command === 'eagain' ? eagainOnly() : Promise.reject(new Error(`unknown command ${command}`))).catch((error: unknown) => {
  process.stderr.write(`small-calls-writer: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
