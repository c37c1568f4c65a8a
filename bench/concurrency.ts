/**
 * Scenario 2, concurrency: 1000 clients connect at once and each downloads the same 8 MiB
 * file; the client is one C epoll loop (bench/c/epoll_client.c). Servers, each its own
 * process: sendFile, Node's stream.pipeline(createReadStream) at two highWaterMarks, and a C
 * epoll + non-blocking sendfile server (what nginx does).
 *
 *   node --import tsx bench/concurrency.ts [--smoke] [--runs N]
 */
import * as fs from 'node:fs'
import {
  buildWorker,
  Child,
  compileC,
  ensureFixture,
  ensurePackageBuilt,
  fixed,
  KiB,
  log,
  median,
  MiB,
  number,
  parseStraceSummary,
  ratio,
  straceTable,
  table,
  targetTable,
  tempPath,
  waitForQuiet,
  warm,
  withChildren,
  runStandalone,
  type BenchOptions,
  type Json,
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Server {
  key: string
  label: string
  node: boolean
}

const SERVERS: Server[] = [
  { key: 'sendFile', label: '`sendFile(socket, path)`', node: true },
  { key: 'sendfile', label: '`sendfile(socketFd(socket), fd, 0, size)`, one fd opened at startup (low-level API)', node: true },
  { key: 'pipeline-64k', label: '`pipeline(createReadStream(file, 64 KiB hwm), socket)`', node: true },
  { key: 'pipeline-1m', label: '`pipeline(createReadStream(file, 1 MiB hwm), socket)`', node: true },
  { key: 'buffer', label: '`socket.end(buffer)`, file read into memory at startup (Node net floor, no file I/O)', node: true },
  { key: 'c', label: 'C epoll + non-blocking `sendfile` (bench/c/epoll_sendfile_server.c)', node: false },
]

interface Sample {
  wallS: number
  loopP99Ms: number
  loopMaxMs: number
  loopSteadyP99Ms: number
  loopTransferP99Ms: number
  statP99Ms: number
  statSamples: number
  peakRssMiB: number
  idleRssMiB: number
  cpuS: number
  elu: number
  runnableWaitMs: number
}

interface Tools {
  client: string
  cServer: string
  worker: string
  bystander: string
}

async function measure(
  tools: Tools,
  server: Server,
  file: string,
  connections: number,
  size: number,
  deadline: number,
  failures: string[],
): Promise<Sample | undefined> {
  const child = server.node
    ? new Child(process.execPath, [tools.worker, server.key, file, String(connections), String(deadline)], `server ${server.key}`)
    : new Child(tools.cServer, [file, String(connections), String(deadline)], 'server c')
  // The C server has no event loop to measure: an idle Node process measures the machine instead.
  const bystander = server.node ? undefined : new Child(process.execPath, [tools.bystander, file, String(deadline)], 'bystander')
  const children = bystander ? [child, bystander] : [child]
  return withChildren(children, async () => {
    if (bystander) await bystander.next(10_000)
    const listening = await child.next(10_000)
    const client = new Child(tools.client, [String(number(listening, 'port')), String(connections), String(size), String(deadline)], 'epoll_client')
    children.push(client)
    const [received, served] = await Promise.all([client.next(deadline * 1000), child.next(deadline * 1000)])
    const [clientExit, serverExit] = await Promise.all([client.exited(10_000), child.exited(10_000)])
    bystander?.process.kill('SIGUSR2')
    const observed = bystander ? await bystander.next(10_000) : served
    const expected = connections * size
    const problems = [
      number(received, 'ok') !== connections &&
        `${number(received, 'ok')}/${connections} connections complete (wrong ${number(received, 'wrong')}, failed ${number(received, 'failed')})`,
      number(received, 'bytes') !== expected && `client received ${number(received, 'bytes')} of ${expected} bytes`,
      number(served, 'bytes') !== expected && `server sent ${number(served, 'bytes')} of ${expected} bytes`,
      number(served, 'errors') !== 0 && `server saw ${number(served, 'errors')} errors`,
      (clientExit !== 0 || serverExit !== 0) && `exit codes ${clientExit}, ${serverExit}`,
    ].filter((problem): problem is string => typeof problem === 'string')
    if (problems.length > 0) {
      failures.push(`concurrency ${server.key}: ${problems.join('; ')}`)
      return undefined
    }
    const optional = (message: Json, key: string) => (typeof message[key] === 'number' ? (message[key] as number) : Number.NaN)
    return {
      wallS: number(received, 'wallNs') / 1e9,
      loopP99Ms: optional(observed, 'loopP99Ms'),
      loopMaxMs: optional(observed, 'loopMaxMs'),
      loopSteadyP99Ms: optional(served, 'loopSteadyP99Ms'),
      loopTransferP99Ms: optional(served, 'loopTransferP99Ms'),
      statP99Ms: optional(observed, 'statP99Ms'),
      statSamples: optional(observed, 'statSamples'),
      peakRssMiB: number(served, 'vmHWMKiB') / KiB,
      idleRssMiB: optional(listening, 'idleRssKiB') / KiB,
      cpuS: (number(served, 'cpuUserUs') + number(served, 'cpuSysUs')) / 1e6,
      elu: optional(observed, 'eventLoopUtilization'),
      runnableWaitMs: optional(observed, 'mainThreadRunnableWaitMs'),
    }
  }).catch((error: unknown) => {
    failures.push(`concurrency ${server.key}: ${(error as Error).message}`)
    return undefined
  })
}

/**
 * `strace -c -f` of one extra run of a Node server: how many cross-thread wakeups (eventfd
 * writes, futex) and event-loop turns (epoll_pwait) each transfer costs.
 */
async function strace(tools: Tools, server: Server, file: string, connections: number, size: number, deadline: number): Promise<string> {
  const output = tempPath(`strace-server-${server.key}.txt`)
  const child = new Child(
    'strace',
    ['-c', '-f', '-o', output, process.execPath, tools.worker, server.key, file, String(connections), String(deadline)],
    `strace server ${server.key}`,
  )
  const children = [child]
  try {
    return await withChildren(children, async () => {
      const listening = await child.next(10_000)
      const client = new Child(tools.client, [String(number(listening, 'port')), String(connections), String(size), String(deadline)], 'epoll_client')
      children.push(client)
      const [received] = await Promise.all([client.next(deadline * 1000), child.next(deadline * 1000)])
      await Promise.all([client.exited(10_000), child.exited(10_000)])
      if (number(received, 'ok') !== connections) return `${server.label}: the traced run failed (${JSON.stringify(received)})`
      return `${server.label}:\n\n${straceTable(parseStraceSummary(output), 10)}`
    })
  } catch (error) {
    return `${server.label}: strace failed: ${(error as Error).message}`
  } finally {
    fs.rmSync(output, { force: true })
  }
}

export async function runConcurrency(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const connections = options.smoke ? 20 : 1000
  const size = options.smoke ? 256 * KiB : 8 * MiB
  const deadline = options.smoke ? 20 : 120
  const tools: Tools = {
    client: compileC('epoll_client'),
    cServer: compileC('epoll_sendfile_server'),
    worker: await buildWorker('concurrency-server'),
    bystander: await buildWorker('bystander'),
  }
  const file = ensureFixture(size)
  warm(file)
  const failures: string[] = []
  const samples = new Map<string, Sample[]>(SERVERS.map((server) => [server.key, []]))
  const perRun: Array<Map<string, Sample>> = []

  for (let run = 0; run < options.runs; run++) {
    const thisRun = new Map<string, Sample>()
    for (let i = 0; i < SERVERS.length; i++) {
      const server = SERVERS[(i + run) % SERVERS.length]
      log(`concurrency run ${run + 1}/${options.runs}: ${server.key}`)
      await waitForQuiet(`concurrency ${server.key}`, options)
      const sample = await measure(tools, server, file, connections, size, deadline, failures)
      if (sample === undefined) continue
      samples.get(server.key)?.push(sample)
      thisRun.set(server.key, sample)
    }
    perRun.push(thisRun)
  }

  const med = (key: string, field: keyof Sample) => median((samples.get(key) ?? []).map((sample) => sample[field]))
  const wallVsC = (key: string) =>
    median(perRun.flatMap((run) => (run.has(key) && run.has('c') ? [(run.get(key) as Sample).wallS / (run.get('c') as Sample).wallS] : [])))
  const node = (server: Server, value: string) => (server.node ? value : 'n/a (C)')
  // Loop, stat, utilization and CPU-wait figures for the C row come from the idle bystander.
  const seen = (server: Server, value: string) => (server.node ? value : `${value} (bystander)`)
  const rows = SERVERS.map((server) => [
    server.label,
    fixed(med(server.key, 'wallS'), 3),
    (samples.get(server.key) ?? []).map((sample) => fixed(sample.wallS, 2)).join(', '),
    ratio(wallVsC(server.key)),
    fixed((connections * size) / 1e9 / med(server.key, 'wallS')),
    seen(server, fixed(med(server.key, 'loopP99Ms'))),
    seen(server, fixed(med(server.key, 'loopMaxMs'))),
    node(server, fixed(med(server.key, 'loopSteadyP99Ms'))),
    node(server, fixed(med(server.key, 'loopTransferP99Ms'))),
    fixed(med(server.key, 'peakRssMiB'), 1),
    node(server, fixed(med(server.key, 'idleRssMiB'), 1)),
    seen(server, fixed(med(server.key, 'statP99Ms'))),
    seen(server, fixed(med(server.key, 'statSamples'), 0)),
    fixed(med(server.key, 'cpuS'), 2),
    seen(server, `${fixed(med(server.key, 'elu') * 100, 0)}%`),
    seen(server, fixed(med(server.key, 'runnableWaitMs'), 0)),
  ])

  const wall = wallVsC('sendFile')
  const loop = med('sendFile', 'loopP99Ms')
  const rss = med('sendFile', 'peakRssMiB')
  const stat = med('sendFile', 'statP99Ms')
  const targets: Target[] = [
    {
      what: 'sendFile wall vs C server',
      goal: '≤ 1.2×',
      measured: ratio(wall, 3),
      met: wall <= 1.2,
      margin: `${fixed((Math.abs(1.2 - wall) / 1.2) * 100, 1)}% ${wall <= 1.2 ? 'under' : 'over'} the limit`,
    },
    {
      what: 'sendFile event-loop delay p99',
      goal: '< 5 ms',
      measured: `${fixed(loop)} ms`,
      met: loop < 5,
      margin: `${fixed(Math.abs(5 - loop))} ms ${loop < 5 ? 'to spare' : 'over'}`,
    },
    {
      what: 'sendFile peak RSS',
      goal: '< 100 MiB',
      measured: `${fixed(rss, 1)} MiB`,
      met: rss < 100,
      margin: `${fixed(Math.abs(100 - rss), 1)} MiB ${rss < 100 ? 'to spare' : 'over'}`,
    },
    {
      what: 'sendFile fs.stat p99',
      goal: '< 10 ms',
      measured: `${fixed(stat)} ms`,
      met: stat < 10,
      margin: `${fixed(Math.abs(10 - stat))} ms ${stat < 10 ? 'to spare' : 'over'}`,
    },
  ]

  let diagnostics = ''
  if (options.diagnose) {
    const traced: string[] = []
    for (const key of ['sendFile', 'sendfile']) {
      const server = SERVERS.find((candidate) => candidate.key === key) as Server
      log(`concurrency strace -c -f: ${key}`)
      await waitForQuiet(`concurrency strace ${key}`, options)
      traced.push(await strace(tools, server, file, connections, size, deadline * 3))
    }
    diagnostics = `\n\n\`strace -c -f\` of one extra run of each zero-copy server (strace slows it; only the counts matter), top syscalls by calls. \`write\` here is mostly libuv's eventfd wakeups of the main thread (uv_async_send, which napi-rs threadsafe functions and promise settlement use); a sendfile error is an EAGAIN:\n\n${traced.join('\n\n')}`
  }

  const markdown = [
    `${connections} connections at once × ${fixed(size / MiB, size < MiB ? 2 : 0)} MiB each (one shared file, page cache warm), read by bench/c/epoll_client.c (one thread, epoll, 256 KiB reads). Wall = the client's first connect() to its last EOF. Inside the Node servers, while clients are connected: event-loop delay (monitorEventLoopDelay, Node's default 10 ms resolution) overall, from the last accept on, and from the last accept to the first finished transfer (the transfers alone, without the burst of 1000 connection handlers at the start or the burst of completions at the end); the latency of an fs.promises.stat issued every 1 ms; event-loop utilization; and how long the main thread was runnable but waiting for a CPU (/proc/<pid>/schedstat), which tells CPU contention from JS blocking the loop. Peak RSS = VmHWM of the server process at the end (idle RSS = the same process before the first connection). Server CPU = user+sys of all its threads from the first accept to the end. The \`socket.end(buffer)\` server does no file I/O at all: it is the floor Node's own net stack sets. For the C server, the loop-delay, fs.stat, utilization and CPU-wait columns come from an idle Node process (bench/workers/bystander.ts) running beside it: what this machine's load does to a Node process that serves nothing. Medians of ${options.runs} run(s); the wall ratio is taken inside each run.`,
    '',
    table(
      [
        'Server',
        'wall s',
        'runs',
        'wall vs C',
        'GB/s',
        'loop delay p99 ms',
        'loop delay max ms',
        'loop delay p99 after last accept ms',
        'loop delay p99 from last accept to first completion ms',
        'peak RSS MiB',
        'idle RSS MiB',
        'fs.stat p99 ms',
        'fs.stat samples',
        'server CPU s',
        'event-loop utilization',
        'main thread runnable, waiting for a CPU (ms)',
      ],
      rows,
    ),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'concurrency', title: `2. Concurrency: ${connections} connections at once`, markdown: markdown + diagnostics, targets, failures }
}

if (require.main === module) runStandalone(runConcurrency)
