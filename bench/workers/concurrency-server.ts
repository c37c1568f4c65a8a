/**
 * A Node file server for the concurrency scenario, in its own process: serves one file to each
 * of <connections> clients, then prints what it saw from the inside and exits.
 *
 *   node concurrency-server.js <mode> <file> <connections> <deadline-seconds>
 *   mode: sendFile | sendfile | pipeline-64k | pipeline-1m | buffer | readFile
 *   (sendfile: the low-level `sendfile(socketFd(socket), fd, 0, size)` on one fd opened at
 *   startup, no per-request open/stat/close, no write gate, no progress: what sendFile adds
 *   on top of the native transfer is the difference between the two rows)
 *   (buffer: socket.end() of the file read into memory at startup, no file I/O per request:
 *   what Node's own net stack costs, the floor under any file-serving method)
 *   (readFile: `socket.end(await fs.promises.readFile(file))` per connection, the usual way to
 *   serve a small file without streams: the baseline for small files)
 *
 * stdout: {"port","idleRssKiB"} once listening; at the end {"connections","bytes","errors",
 * "loopP99Ms","loopMaxMs","loopSteadyP99Ms","loopSteadySamples",
 * "loopTransferP99Ms","loopTransferSamples","statP99Ms","statMaxMs","statSamples",
 * "vmHWMKiB","eventLoopUtilization","mainThreadOnCpuMs","mainThreadRunnableWaitMs","threadCpuMs":{"main","native","other"},
 * "cpuUserUs","cpuSysUs"}.
 *
 * While clients are connected it measures what other work on this process would feel: the
 * event-loop delay (perf_hooks.monitorEventLoopDelay at 1 ms resolution: the default 10 ms timer
 * would round every delay up to its own tick) and the
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

// 1 ms: the resolution the goal (p99 < 5 ms) is stated at.
const LOOP_RESOLUTION_MS = 1
const loopDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
// The same, from the last accept on: separates the accept burst (Node runs every pending
// connection's handler in one loop turn) from the transfers themselves.
const steadyDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
// And from the last accept to the first finished transfer: the transfers alone, with neither
// the burst of connection handlers at the start nor the burst of completions at the end (all
// clients are read evenly, so they finish together).
const transferDelay = monitorEventLoopDelay({ resolution: LOOP_RESOLUTION_MS })
let finished = 0

function transferDone(sent: number): void {
  bytes += sent
  settled++
  if (finished++ === 0) transferDelay.disable()
}

function transferFailed(): void {
  errors++
  settled++
}

/** Transfers that ended, well or not: the report waits for all of them, not only for the sockets. */
let settled = 0
const statLatencies: number[] = []
let measuring = false
let accepted = 0
let closed = 0
let bytes = 0
let errors = 0
let cpuAtStart: NodeJS.CpuUsage | undefined
let eluAtStart: ReturnType<typeof performance.eventLoopUtilization> | undefined
let schedAtStart = [0, 0]
let threadsAtStart: Record<string, number> = {}

/**
 * The main thread's time on a CPU and time spent runnable but waiting for one (ns), from
 * /proc/<pid>/schedstat (the thread-group leader is the main thread). A loop delay with a low
 * event-loop utilization and a large wait here is CPU contention, not JS blocking the loop.
 */
function mainThreadSched(): number[] {
  return fs.readFileSync(`/proc/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).slice(0, 2).map(Number)
}

/**
 * On-CPU time (ns) of this process's threads, grouped: the main thread (the event loop), the
 * package's native runtime (its threads are named zerocopy-sendfile), and the rest (libuv's
 * threadpool and V8's platform threads, which Node leaves unnamed). Where the server's CPU goes,
 * for the profile beside a missed goal.
 */
function threadGroupsNs(): Record<string, number> {
  const groups: Record<string, number> = { main: 0, native: 0, other: 0 }
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      const name = fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
      const onCpu = Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').split(' ')[0])
      const group = Number(tid) === process.pid ? 'main' : name.startsWith('zerocopy') ? 'native' : 'other'
      groups[group] += onCpu
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return groups
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
          transferFailed()
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
          transferFailed()
          socket.destroy()
        },
      )
      return
    case 'pipeline-64k':
    case 'pipeline-1m':
      pipeline(fs.createReadStream(file, { highWaterMark: mode === 'pipeline-1m' ? 1024 * 1024 : 64 * 1024 }), socket, (error) => {
        if (error) transferFailed()
        else transferDone(socket.bytesWritten)
      })
      return
    case 'readFile':
      fs.promises.readFile(file).then(
        (content) => {
          socket.end(content, () => transferDone(content.length))
        },
        () => {
          transferFailed()
          socket.destroy()
        },
      )
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

function reportWhenSettled(deadline: number): void {
  if (settled >= connections || performance.now() > deadline) report()
  else setTimeout(() => reportWhenSettled(deadline), 1)
}

function report(): void {
  measuring = false
  loopDelay.disable()
  steadyDelay.disable()
  transferDelay.disable()
  const cpu = process.cpuUsage(cpuAtStart)
  const elu = performance.eventLoopUtilization(eluAtStart)
  const sched = mainThreadSched()
  const threads = threadGroupsNs()
  const threadCpuMs = Object.fromEntries(Object.entries(threads).map(([group, ns]) => [group, (ns - (threadsAtStart[group] ?? 0)) / 1e6]))
  process.stdout.write(
    `${JSON.stringify({
      connections: closed,
      bytes,
      errors,
      loopP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : null,
      loopMaxMs: loopDelay.max / 1e6,
      // No sample at all (a run shorter than one tick after the last accept): unknown, not 0.
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
      threadCpuMs,
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
    threadsAtStart = threadGroupsNs()
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
    // A pipeline's callback (or an end() callback) may come after its socket's 'close': the
    // report waits, bounded, for every transfer to have counted its bytes.
    if (++closed === connections) reportWhenSettled(performance.now() + 5000)
  })
  serve(socket)
})

// The client connects all at once: Node's default backlog (511) would drop SYNs into 1 s retries.
server.listen({ host: '127.0.0.1', port: 0, backlog: 4096 }, () => {
  const address = server.address() as net.AddressInfo
  process.stdout.write(`${JSON.stringify({ port: address.port, idleRssKiB: statusKiB('VmRSS') })}\n`)
})
