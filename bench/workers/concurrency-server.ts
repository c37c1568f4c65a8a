/**
 * A Node file server for the concurrency scenario, in its own process: serves one file to each
 * of <connections> clients, then prints what it saw from the inside and exits.
 *
 *   node concurrency-server.js <mode> <file> <connections> <deadline-seconds>
 *   mode: sendFile | sendfile | pipeline-64k | pipeline-1m | buffer
 *   (sendfile: the low-level `sendfile(socketFd(socket), fd, 0, size)` on one fd opened at
 *   startup, no per-request open/stat/close, no write gate, no progress: what sendFile adds
 *   on top of the native transfer is the difference between the two rows)
 *   (buffer: socket.end() of the file read into memory at startup, no file I/O per request:
 *   what Node's own net stack costs, the floor under any file-serving method)
 *
 * stdout: {"port","idleRssKiB"} once listening; at the end {"connections","bytes","errors",
 * "loopP99Ms","loopMaxMs","loopSteadyP99Ms","loopSteadySamples",
 * "loopTransferP99Ms","loopTransferSamples","statP99Ms","statMaxMs","statSamples",
 * "vmHWMKiB","eventLoopUtilization","mainThreadOnCpuMs","mainThreadRunnableWaitMs","cpuUserUs","cpuSysUs"}.
 *
 * While clients are connected it measures what other work on this process would feel: the
 * event-loop delay (perf_hooks.monitorEventLoopDelay, Node's default 10 ms resolution) and the
 * latency of an fs.promises.stat issued every 1 ms, which queues behind whatever occupies
 * libuv's threadpool (a createReadStream's reads do; sendfile's transfers do not).
 */
import * as fs from 'node:fs'
import * as net from 'node:net'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { pipeline } from 'node:stream'
import { sendFile, sendfile, socketFd } from '../..'

const [mode, file, connectionsText, deadlineText] = process.argv.slice(2)
const connections = Number(connectionsText)
const inMemory = mode === 'buffer' ? fs.readFileSync(file) : undefined
const sharedFd = mode === 'sendfile' ? fs.openSync(file, 'r') : -1
const fileSize = fs.statSync(file).size

setTimeout(() => {
  process.stderr.write(`concurrency-server ${mode}: deadline passed after ${closed}/${connections} connections\n`)
  process.exit(3)
}, Number(deadlineText) * 1000).unref()

function statusKiB(field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+)`, 'm').exec(fs.readFileSync('/proc/self/status', 'utf8'))
  return match ? Number(match[1]) : -1
}

const loopDelay = monitorEventLoopDelay()
// The same, from the last accept on: separates the accept burst (Node runs every pending
// connection's handler in one loop turn) from the transfers themselves.
const steadyDelay = monitorEventLoopDelay()
// And from the last accept to the first finished transfer: the transfers alone, with neither
// the burst of connection handlers at the start nor the burst of completions at the end (all
// clients are read evenly, so they finish together).
const transferDelay = monitorEventLoopDelay()
let finished = 0

function transferDone(sent: number): void {
  bytes += sent
  if (finished++ === 0) transferDelay.disable()
}
const statLatencies: number[] = []
let measuring = false
let accepted = 0
let closed = 0
let bytes = 0
let errors = 0
let cpuAtStart: NodeJS.CpuUsage | undefined
let eluAtStart: ReturnType<typeof performance.eventLoopUtilization> | undefined
let schedAtStart = [0, 0]

/**
 * The main thread's time on a CPU and time spent runnable but waiting for one (ns), from
 * /proc/<pid>/schedstat (the thread-group leader is the main thread). A loop delay with a low
 * event-loop utilization and a large wait here is CPU contention, not JS blocking the loop.
 */
function mainThreadSched(): number[] {
  return fs.readFileSync(`/proc/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).slice(0, 2).map(Number)
}

async function statLoop(): Promise<void> {
  while (measuring) {
    const started = performance.now()
    await fs.promises.stat(file)
    statLatencies.push(performance.now() - started)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

function serve(socket: net.Socket): void {
  switch (mode) {
    case 'sendFile':
      sendFile(socket, file).then(
        (sent) => {
          transferDone(sent)
          socket.end()
        },
        () => {
          errors++
          socket.destroy()
        },
      )
      return
    case 'sendfile':
      sendfile(socketFd(socket), sharedFd, 0, fileSize).then(
        (sent) => {
          transferDone(sent)
          socket.end()
        },
        () => {
          errors++
          socket.destroy()
        },
      )
      return
    case 'pipeline-64k':
    case 'pipeline-1m':
      pipeline(fs.createReadStream(file, { highWaterMark: mode === 'pipeline-1m' ? 1024 * 1024 : 64 * 1024 }), socket, (error) => {
        if (error) errors++
        else transferDone(socket.bytesWritten)
      })
      return
    case 'buffer':
      socket.end(inMemory as Buffer, () => {
        transferDone(socket.bytesWritten)
      })
      return
    default:
      throw new Error(`unknown mode ${mode}`)
  }
}

function report(): void {
  measuring = false
  loopDelay.disable()
  steadyDelay.disable()
  transferDelay.disable()
  const cpu = process.cpuUsage(cpuAtStart)
  const elu = performance.eventLoopUtilization(eluAtStart)
  const sched = mainThreadSched()
  process.stdout.write(
    `${JSON.stringify({
      connections: closed,
      bytes,
      errors,
      loopP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : null,
      loopMaxMs: loopDelay.max / 1e6,
      // No sample at all (a run shorter than one 10 ms tick after the last accept): unknown, not 0.
      loopSteadyP99Ms: steadyDelay.count > 0 ? steadyDelay.percentile(99) / 1e6 : null,
      loopSteadySamples: steadyDelay.count,
      loopTransferP99Ms: transferDelay.count > 0 ? transferDelay.percentile(99) / 1e6 : null,
      loopTransferSamples: transferDelay.count,
      statP99Ms: percentile(statLatencies, 99),
      statMaxMs: statLatencies.length > 0 ? Math.max(...statLatencies) : null,
      statSamples: statLatencies.length,
      vmHWMKiB: statusKiB('VmHWM'),
      eventLoopUtilization: elu.utilization,
      mainThreadOnCpuMs: (sched[0] - schedAtStart[0]) / 1e6,
      mainThreadRunnableWaitMs: (sched[1] - schedAtStart[1]) / 1e6,
      cpuUserUs: cpu.user,
      cpuSysUs: cpu.system,
    })}\n`,
  )
  server.close()
  // The stat loop's last timer and any lingering handle must not keep the process up.
  setImmediate(() => process.exit(0))
}

const server = net.createServer((socket) => {
  if (accepted++ === 0) {
    cpuAtStart = process.cpuUsage()
    eluAtStart = performance.eventLoopUtilization()
    schedAtStart = mainThreadSched()
    loopDelay.enable()
    measuring = true
    void statLoop()
  }
  if (accepted === connections) {
    steadyDelay.enable()
    if (finished === 0) transferDelay.enable()
  }
  socket.on('error', () => {
    errors++
  })
  socket.on('close', () => {
    // After this turn: a pipeline's own 'close' listener, registered after this one, still has
    // to count the last transfer's bytes.
    if (++closed === connections) setImmediate(report)
  })
  serve(socket)
})

// The client connects all at once: Node's default backlog (511) would drop SYNs into 1 s retries.
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const address = server.address() as net.AddressInfo
  process.stdout.write(`${JSON.stringify({ port: address.port, idleRssKiB: statusKiB('VmRSS') })}\n`)
})
