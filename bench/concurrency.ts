/**
 * Scenario 2, concurrency: 1000 clients connect at once and each downloads the same file; the
 * client is one C epoll loop (bench/c/epoll_client.c). Servers, each its own process:
 *
 * - 8 MiB per connection: sendFile, the low-level sendfile on one fd, Node's
 *   stream.pipeline(createReadStream) at two highWaterMarks, socket.end(buffer), and the C epoll
 *   + non-blocking sendfile server (what nginx does) twice: opening the file per connection, as
 *   sendFile(socket, path) must, and on one fd opened at startup.
 * - 16 KiB per connection: sendFile against `socket.end(await fs.promises.readFile(path))`, the
 *   usual way to serve a small file, with the C server for reference.
 *
 * The timed runs use the client's counting mode; every server is also run once, untimed, with
 * the client comparing each connection's bytes with the file.
 *
 *   node --import tsx bench/concurrency.ts [--smoke] [--runs N] [--no-diagnose]
 */
import * as fs from 'node:fs'
import {
  amountTarget,
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
  ratioTarget,
  straceTable,
  table,
  targetTable,
  tempPath,
  waitForQuiet,
  warm,
  withChildren,
  runStandalone,
  sizeLabel,
  type BenchOptions,
  type Headline,
  type Json,
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Server {
  key: string
  label: string
  /** A Node worker mode (bench/workers/concurrency-server.ts), or a C server. */
  node: boolean
  /** Arguments after the C server's <file> <connections> <deadline>. */
  cArgs?: string[]
}

const C_PER_CONNECTION = 'C epoll + non-blocking `sendfile`, opens the file per connection (bench/c/epoll_sendfile_server.c)'
const C_SHARED = 'C epoll + non-blocking `sendfile`, one fd opened at startup (bench/c/epoll_sendfile_server.c `shared`)'

const SERVERS: Server[] = [
  { key: 'sendFile', label: '`sendFile(socket, path)`', node: true },
  { key: 'sendfile', label: '`sendfile(socketFd(socket), fd, 0, size)`, one fd opened at startup (low-level API)', node: true },
  { key: 'pipeline-64k', label: '`pipeline(createReadStream(file, 64 KiB hwm), socket)`', node: true },
  { key: 'pipeline-1m', label: '`pipeline(createReadStream(file, 1 MiB hwm), socket)`', node: true },
  { key: 'buffer', label: '`socket.end(buffer)`, file read into memory at startup (Node net floor, no file I/O)', node: true },
  { key: 'c', label: C_PER_CONNECTION, node: false, cArgs: [] },
  { key: 'c-shared', label: C_SHARED, node: false, cArgs: ['shared'] },
]

const SMALL_SERVERS: Server[] = [
  { key: 'sendFile', label: '`sendFile(socket, path)`', node: true },
  { key: 'readFile', label: '`socket.end(await fs.promises.readFile(path))`', node: true },
  { key: 'c', label: C_PER_CONNECTION, node: false, cArgs: [] },
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
  /** On-CPU ms of the server's threads, by group (Node servers only). */
  mainThreadMs: number
  nativeThreadsMs: number
  otherThreadsMs: number
}

interface Tools {
  client: string
  cServer: string
  worker: string
  bystander: string
}

interface Load {
  file: string
  connections: number
  size: number
  deadline: number
}

function serverChild(tools: Tools, server: Server, load: Load, wrap: string[] = []): Child {
  const [command, ...args] = server.node
    ? [process.execPath, tools.worker, server.key, load.file, String(load.connections), String(load.deadline)]
    : [tools.cServer, load.file, String(load.connections), String(load.deadline), ...(server.cArgs ?? [])]
  return wrap.length > 0
    ? new Child(wrap[0], [...wrap.slice(1), command, ...args], `${wrap[0]} server ${server.key}`)
    : new Child(command, args, `server ${server.key}`)
}

/**
 * One run of a server under the client: `count` for timing, `verify` to compare every
 * connection's bytes with the file. Returns the problems found (empty: all bytes right) and,
 * when counting, the sample.
 */
async function measure(
  tools: Tools,
  server: Server,
  load: Load,
  mode: 'count' | 'verify',
  withBystander: boolean,
): Promise<{ problems: string[]; sample?: Sample }> {
  const child = serverChild(tools, server, load)
  // The C servers have no event loop to measure: an idle Node process measures the machine instead.
  const bystander = !server.node && withBystander ? new Child(process.execPath, [tools.bystander, load.file, String(load.deadline)], 'bystander') : undefined
  const children = bystander ? [child, bystander] : [child]
  return withChildren(children, async () => {
    if (bystander) await bystander.next(10_000)
    const listening = await child.next(10_000)
    const clientArgs = [String(number(listening, 'port')), String(load.connections), String(load.size), String(load.deadline)]
    const client = new Child(tools.client, mode === 'verify' ? [...clientArgs, 'verify', load.file] : clientArgs, `epoll_client ${mode}`)
    children.push(client)
    const [received, served] = await Promise.all([client.next(load.deadline * 1000), child.next(load.deadline * 1000)])
    const [clientExit, serverExit] = await Promise.all([client.exited(10_000), child.exited(10_000)])
    bystander?.process.kill('SIGUSR2')
    const observed = bystander ? await bystander.next(10_000) : served
    const expected = load.connections * load.size
    const problems = [
      number(received, 'eof') !== load.connections &&
        `${number(received, 'eof')}/${load.connections} connections reached EOF (failed ${number(received, 'failed')})`,
      number(received, 'wrong') !== 0 && `${number(received, 'wrong')} connections received bytes that differ from the file`,
      number(received, 'bytes') !== expected && `client received ${number(received, 'bytes')} of ${expected} bytes`,
      number(served, 'bytes') !== expected && `server sent ${number(served, 'bytes')} of ${expected} bytes`,
      number(served, 'errors') !== 0 && `server saw ${number(served, 'errors')} errors`,
      (clientExit !== 0 || serverExit !== 0) && `exit codes ${clientExit}, ${serverExit}`,
    ].filter((problem): problem is string => typeof problem === 'string')
    if (problems.length > 0 || mode === 'verify') return { problems }
    const optional = (message: Json, key: string) => (typeof message[key] === 'number' ? (message[key] as number) : Number.NaN)
    const threads = (typeof served.threadCpuMs === 'object' && served.threadCpuMs !== null ? served.threadCpuMs : {}) as Json
    const sample: Sample = {
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
      mainThreadMs: optional(threads, 'main'),
      nativeThreadsMs: optional(threads, 'native'),
      otherThreadsMs: optional(threads, 'other'),
    }
    return { problems, sample }
  }).catch((error: unknown) => ({ problems: [(error as Error).message] }))
}

/**
 * `strace -c -f` of one extra run of a server: how many cross-thread wakeups (eventfd writes,
 * futex) and event-loop turns (epoll_pwait) each transfer costs, beside what C needs.
 */
async function strace(tools: Tools, server: Server, load: Load): Promise<string> {
  const output = tempPath(`strace-server-${server.key}.txt`)
  const child = serverChild(tools, server, load, ['strace', '-c', '-f', '-o', output])
  const children = [child]
  try {
    return await withChildren(children, async () => {
      const listening = await child.next(10_000)
      const client = new Child(
        tools.client,
        [String(number(listening, 'port')), String(load.connections), String(load.size), String(load.deadline)],
        'epoll_client',
      )
      children.push(client)
      const [received] = await Promise.all([client.next(load.deadline * 1000), child.next(load.deadline * 1000)])
      await Promise.all([client.exited(10_000), child.exited(10_000)])
      if (number(received, 'eof') !== load.connections) return `${server.label}: the traced run failed (${JSON.stringify(received)})`
      return `${server.label}:\n\n${straceTable(parseStraceSummary(output), 10)}`
    })
  } catch (error) {
    return `${server.label}: strace failed: ${(error as Error).message}`
  } finally {
    fs.rmSync(output, { force: true })
  }
}

/** Runs every server once with the verifying client; a wrong byte anywhere is a failure. */
async function verifyAll(tools: Tools, servers: Server[], load: Load, label: string, options: BenchOptions, failures: string[]): Promise<void> {
  for (const server of servers) {
    log(`${label} verify: ${server.key}`)
    await waitForQuiet(`${label} verify ${server.key}`, options)
    const { problems } = await measure(tools, server, load, 'verify', false)
    if (problems.length > 0) failures.push(`${label} ${server.key} (verifying run): ${problems.join('; ')}`)
  }
}

/** Timed runs of every server, in an order rotated per run; the samples of each run by server. */
async function timedRuns(
  tools: Tools,
  servers: Server[],
  load: Load,
  runs: number,
  label: string,
  options: BenchOptions,
  failures: string[],
  withBystander: boolean,
): Promise<Array<Map<string, Sample>>> {
  const perRun: Array<Map<string, Sample>> = []
  for (let run = 0; run < runs; run++) {
    const thisRun = new Map<string, Sample>()
    for (let i = 0; i < servers.length; i++) {
      const server = servers[(i + run) % servers.length]
      log(`${label} run ${run + 1}/${runs}: ${server.key}`)
      await waitForQuiet(`${label} ${server.key}`, options)
      const { problems, sample } = await measure(tools, server, load, 'count', withBystander)
      if (problems.length > 0) failures.push(`${label} ${server.key}: ${problems.join('; ')}`)
      if (sample !== undefined) thisRun.set(server.key, sample)
    }
    perRun.push(thisRun)
  }
  return perRun
}

/** Medians over runs, and ratios taken inside each run before their median. */
function summarize(perRun: Array<Map<string, Sample>>) {
  const samplesOf = (key: string) => perRun.flatMap((run) => (run.has(key) ? [run.get(key) as Sample] : []))
  return {
    samplesOf,
    med: (key: string, field: keyof Sample) => median(samplesOf(key).map((sample) => sample[field])),
    /** ours / baseline wall time, per run: above 1 is slower than the baseline. */
    wallVs: (key: string, baseline: string) =>
      median(perRun.flatMap((run) => (run.has(key) && run.has(baseline) ? [(run.get(key) as Sample).wallS / (run.get(baseline) as Sample).wallS] : []))),
  }
}

export async function runConcurrency(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const connections = options.smoke ? 20 : 1000
  const size = options.smoke ? 256 * KiB : 8 * MiB
  const smallSize = 16 * KiB
  const deadline = options.smoke ? 20 : 120
  // The 16 KiB runs take a fraction of a second each: more of them for a steadier median.
  const smallRuns = options.smoke ? 1 : options.runs * 3
  const tools: Tools = {
    client: compileC('epoll_client'),
    cServer: compileC('epoll_sendfile_server'),
    worker: await buildWorker('concurrency-server'),
    bystander: await buildWorker('bystander'),
  }
  const load: Load = { file: ensureFixture(size), connections, size, deadline }
  const smallLoad: Load = { file: ensureFixture(smallSize), connections, size: smallSize, deadline }
  warm(load.file)
  warm(smallLoad.file)
  const failures: string[] = []

  await verifyAll(tools, SERVERS, load, 'concurrency', options, failures)
  const perRun = await timedRuns(tools, SERVERS, load, options.runs, 'concurrency', options, failures, true)
  await verifyAll(tools, SMALL_SERVERS, smallLoad, 'concurrency 16 KiB', options, failures)
  const smallPerRun = await timedRuns(tools, SMALL_SERVERS, smallLoad, smallRuns, 'concurrency 16 KiB', options, failures, false)

  const { samplesOf, med, wallVs } = summarize(perRun)
  const node = (server: Server, value: string) => (server.node ? value : 'n/a (C)')
  // Loop, stat, utilization and CPU-wait figures for the C rows come from the idle bystander.
  const seen = (server: Server, value: string) => (server.node ? value : `${value} (bystander)`)
  const rows = SERVERS.map((server) => [
    server.label,
    fixed(med(server.key, 'wallS'), 3),
    samplesOf(server.key)
      .map((sample) => fixed(sample.wallS, 2))
      .join(', '),
    ratio(wallVs(server.key, 'c-shared')),
    ratio(wallVs(server.key, 'c')),
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

  const threadRows = SERVERS.filter((server) => server.node).map((server) => [
    server.label,
    fixed(med(server.key, 'mainThreadMs'), 0),
    fixed(med(server.key, 'nativeThreadsMs'), 0),
    fixed(med(server.key, 'otherThreadsMs'), 0),
    fixed(med(server.key, 'cpuS') * 1000, 0),
  ])

  const small = summarize(smallPerRun)
  const smallRows = SMALL_SERVERS.map((server) => [
    server.label,
    fixed(small.med(server.key, 'wallS') * 1000, 1),
    small
      .samplesOf(server.key)
      .map((sample) => fixed(sample.wallS * 1000, 0))
      .join(', '),
    ratio(1 / small.wallVs(server.key, 'readFile')),
    fixed(small.med(server.key, 'peakRssMiB'), 1),
    fixed(small.med(server.key, 'cpuS'), 3),
    node(server, fixed(small.med(server.key, 'loopP99Ms'))),
  ])

  const scale = `${connections} × ${sizeLabel(size)}`
  const idleLoop = med('c-shared', 'loopP99Ms')
  const targets: Target[] = [
    ratioTarget(`\`sendFile(socket, path)\` wall time, ${scale}`, C_SHARED, wallVs('sendFile', 'c-shared'), '≤', 1.15),
    ratioTarget(`\`sendFile(socket, path)\` wall time, ${scale}`, C_PER_CONNECTION, wallVs('sendFile', 'c'), '≤', 1.1),
    amountTarget(
      `\`sendFile\` server's event-loop delay p99 (monitorEventLoopDelay, 1 ms resolution), first accept to last close, ${scale}`,
      `none (absolute); for scale, an idle Node process beside the one-fd C server measures ${fixed(idleLoop)} ms`,
      med('sendFile', 'loopP99Ms'),
      '<',
      5,
      'ms',
    ),
    amountTarget(`\`sendFile\` server's peak RSS, ${scale}`, 'none (absolute)', med('sendFile', 'peakRssMiB'), '<', 100, 'MiB', 1),
    amountTarget(
      `\`fs.promises.stat\` p99 inside the \`sendFile\` server, ${scale}`,
      'none (absolute): other I/O on the threadpool stays responsive',
      med('sendFile', 'statP99Ms'),
      '<',
      10,
      'ms',
    ),
    ratioTarget(
      `\`sendFile(socket, path)\` speed (1 / wall time), ${connections} × 16 KiB`,
      '`socket.end(await fs.promises.readFile(path))` per connection',
      1 / small.wallVs('sendFile', 'readFile'),
      '≥',
      1.0,
    ),
  ]
  const headlines: Headline[] = [
    {
      scenario: `${connections} connections × ${sizeLabel(size)}`,
      ours: `\`sendFile\` ${fixed(med('sendFile', 'wallS'), 2)} s wall, ${fixed(med('sendFile', 'peakRssMiB'), 0)} MiB RSS, loop delay p99 ${fixed(med('sendFile', 'loopP99Ms'), 1)} ms`,
      baselines: `C epoll+sendfile server ${fixed(med('c-shared', 'wallS'), 2)} s (one fd) / ${fixed(med('c', 'wallS'), 2)} s (open per connection); \`pipeline(createReadStream)\` ${fixed(med('pipeline-64k', 'wallS'), 2)} s (1 MiB chunks: ${fixed(med('pipeline-1m', 'peakRssMiB'), 0)} MiB RSS)`,
    },
    {
      scenario: `${connections} connections × 16 KiB`,
      ours: `\`sendFile\` ${fixed(small.med('sendFile', 'wallS') * 1000, 0)} ms wall`,
      baselines: `\`socket.end(await readFile())\` ${fixed(small.med('readFile', 'wallS') * 1000, 0)} ms; C server ${fixed(small.med('c', 'wallS') * 1000, 0)} ms`,
    },
  ]

  let diagnostics = ''
  if (options.diagnose) {
    const traced: string[] = []
    const traceLoad = { ...load, deadline: deadline * 3 }
    for (const key of ['sendFile', 'sendfile', 'c-shared']) {
      const server = SERVERS.find((candidate) => candidate.key === key) as Server
      log(`concurrency strace -c -f: ${key}`)
      await waitForQuiet(`concurrency strace ${key}`, options)
      traced.push(await strace(tools, server, traceLoad))
    }
    const smallTraced: string[] = []
    for (const server of SMALL_SERVERS.filter((candidate) => candidate.node)) {
      log(`concurrency 16 KiB strace -c -f: ${server.key}`)
      await waitForQuiet(`concurrency 16 KiB strace ${server.key}`, options)
      smallTraced.push(await strace(tools, server, { ...smallLoad, deadline: deadline * 3 }))
    }
    diagnostics = [
      '',
      '',
      `\`strace -c -f\` of one extra run of each zero-copy server, ${scale} (strace slows it; only the counts matter), top syscalls by calls. \`write\` here is mostly libuv's eventfd wakeups of the main thread (uv_async_send, which napi-rs threadsafe functions and promise settlement use); a sendfile error is an EAGAIN:`,
      '',
      traced.join('\n\n'),
      '',
      `The same for the ${connections} × 16 KiB servers:`,
      '',
      smallTraced.join('\n\n'),
    ].join('\n')
  }

  const markdown = [
    `### ${scale}`,
    '',
    `${connections} connections at once × ${sizeLabel(size)} each (one shared file, page cache warm), read by bench/c/epoll_client.c: one thread that opens every connection first, then reads them all with level-triggered epoll and 256 KiB reads, counting bytes and EOFs and nothing per connection (a client that checks what it reads was slower than the servers it timed). Wall = the client's first connect() to its last EOF. Verified: every server also ran once, untimed, with the client comparing each connection's stream with the file byte for byte and checking its length.`,
    '',
    `Inside the Node servers, while clients are connected: event-loop delay (monitorEventLoopDelay at 1 ms resolution) overall, from the last accept on, and from the last accept to the first finished transfer (the transfers alone, without the burst of connection handlers at the start or the burst of completions at the end); the latency of an fs.promises.stat issued every 1 ms; event-loop utilization; and how long the main thread was runnable but waiting for a CPU (/proc/<pid>/schedstat), which tells CPU contention from JS blocking the loop. Peak RSS = VmHWM of the server process at the end (idle RSS = the same process before the first connection). Server CPU = user+sys of all its threads from the first accept to the end. The \`socket.end(buffer)\` server does no file I/O at all: it is the floor Node's own net stack sets. For the C servers, the loop-delay, fs.stat, utilization and CPU-wait columns come from an idle Node process (bench/workers/bystander.ts) running beside them: what this machine's load does to a Node process that serves nothing. Medians of ${options.runs} run(s); the wall ratios are taken inside each run.`,
    '',
    table(
      [
        'Server',
        'wall s',
        'runs',
        'wall vs C, one fd',
        'wall vs C, open per connection',
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
    `Where the Node servers' CPU goes (on-CPU ms from /proc/self/task/*/schedstat, first accept to the end; medians): the main thread runs the event loop and every JS callback; the native runtime is the package's tokio worker (its threads are named zerocopy-sendfile); "other" is libuv's threadpool (fs calls: open, stat, close, createReadStream's reads) and V8's platform threads. Kernel work done on behalf of a socket (TCP, loopback delivery) lands on whichever thread is running at the time.`,
    '',
    table(['Server', 'main thread ms', 'native runtime ms', 'other threads ms', 'process CPU ms (user+sys)'], threadRows),
    '',
    `### ${connections} × 16 KiB`,
    '',
    `The same client and servers with a 16 KiB file: the per-request cost (open, stat, close, the promise) rather than the bytes. Wall as above; medians of ${smallRuns} run(s), the ratio taken inside each run.`,
    '',
    table(['Server', 'wall ms', 'runs', 'speed vs readFile', 'peak RSS MiB', 'server CPU s', 'loop delay p99 ms'], smallRows),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'concurrency', title: `2. Concurrency: ${connections} connections at once`, markdown: markdown + diagnostics, targets, headlines, failures }
}

if (require.main === module) runStandalone(runConcurrency)
