/**
 * One bulk sender in its own process, so its CPU time is its own: connects to the sink, sends
 * the whole file one way, and prints
 * {"bytes","cpuUserUs","cpuSysUs","senderWallNs","voluntarySwitches","involuntarySwitches","eagain"}.
 * CPU and wall cover the send until the FIN is queued, the window the C loop measures too.
 *
 *   node bulk-sender.js <mode> <port> <file> <size> <deadline-seconds>
 *   mode: sendFile | sendfile | sendfileSync | pipeline-default | pipeline-1m
 */
import { once } from 'node:events'
import * as fs from 'node:fs'
import * as net from 'node:net'
import { pipeline } from 'node:stream/promises'
import { sendFile, sendfile, sendfileSync, socketFd } from '../..'

const [mode, portText, file, sizeText, deadlineText] = process.argv.slice(2)
const size = Number(sizeText)

// A stuck transfer must end the process, not the bench.
setTimeout(() => {
  process.stderr.write(`bulk-sender ${mode}: deadline passed\n`)
  process.exit(3)
}, Number(deadlineText) * 1000).unref()

function finish(socket: net.Socket): Promise<unknown> {
  socket.end()
  return once(socket, 'finish')
}

async function send(socket: net.Socket, fd: number): Promise<{ bytes: number; eagain: number }> {
  switch (mode) {
    case 'sendFile': {
      const bytes = await sendFile(socket, file)
      await finish(socket)
      return { bytes, eagain: 0 }
    }
    case 'sendfile': {
      const bytes = await sendfile(socketFd(socket), fd, 0, size)
      await finish(socket)
      return { bytes, eagain: 0 }
    }
    case 'sendfileSync': {
      // What a caller of the sync API does: send what fits, and on EAGAIN let the event loop
      // turn once before trying again (Node offers no way to wait for a raw fd's writability).
      const out = socketFd(socket)
      let offset = 0
      let eagain = 0
      while (offset < size) {
        try {
          offset += sendfileSync(out, fd, offset, size - offset)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error
          eagain++
          await new Promise((resolve) => setImmediate(resolve))
        }
      }
      await finish(socket)
      return { bytes: offset, eagain }
    }
    case 'pipeline-default':
    case 'pipeline-1m': {
      const options = mode === 'pipeline-1m' ? { highWaterMark: 1024 * 1024 } : {}
      await pipeline(fs.createReadStream(file, options), socket)
      return { bytes: socket.bytesWritten, eagain: 0 }
    }
    default:
      throw new Error(`unknown mode ${mode}`)
  }
}

async function main(): Promise<void> {
  const socket = net.connect({ host: '127.0.0.1', port: Number(portText) })
  await once(socket, 'connect')
  const closed = once(socket, 'close')
  // The raw-fd modes read from an fd the sender opened before the clock starts.
  const fd = fs.openSync(file, 'r')
  const usage = process.resourceUsage()
  const cpu = process.cpuUsage()
  const started = process.hrtime.bigint()
  const { bytes, eagain } = await send(socket, fd)
  const senderWallNs = Number(process.hrtime.bigint() - started)
  const spent = process.cpuUsage(cpu)
  const after = process.resourceUsage()
  process.stdout.write(
    `${JSON.stringify({
      bytes,
      eagain,
      cpuUserUs: spent.user,
      cpuSysUs: spent.system,
      senderWallNs,
      voluntarySwitches: after.voluntaryContextSwitches - usage.voluntaryContextSwitches,
      involuntarySwitches: after.involuntaryContextSwitches - usage.involuntaryContextSwitches,
    })}\n`,
  )
  await closed
  fs.closeSync(fd)
}

main().catch((error: unknown) => {
  process.stderr.write(`bulk-sender ${mode}: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
