/**
 * Scenario 1, bulk: one big file to one TCP socket on 127.0.0.1, received by the same C sink
 * for every sender. Each sender runs in its own process so its CPU time is its own.
 *
 *   node --import tsx bench/bulk.ts [--smoke] [--runs N] [--no-diagnose]
 */
import * as fs from 'node:fs'
import {
  buildWorker,
  Child,
  compileC,
  ensureFixture,
  ensurePackageBuilt,
  fixed,
  GiB,
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
  sizeLabel,
  ratioTarget,
  type BenchOptions,
  type Headline,
  type ScenarioResult,
  type StraceRow,
  type Target,
} from './lib/common'

interface Sender {
  key: string
  label: string
}

const SENDERS: Sender[] = [
  { key: 'sendFile', label: '`sendFile(socket, path)`' },
  { key: 'sendfile', label: '`await sendfile(socketFd(socket), fd, 0, size)`' },
  { key: 'sendfileSync', label: '`sendfileSync` loop, `setImmediate` on EAGAIN' },
  { key: 'pipeline-default', label: '`pipeline(createReadStream(file), socket)`, default 64 KiB' },
  { key: 'pipeline-1m', label: '`pipeline(createReadStream(file, 1 MiB hwm), socket)`' },
  { key: 'c', label: 'C `sendfile` loop, blocking socket (bench/c/sendfile_loop.c)' },
  { key: 'c-nonblock', label: 'C `sendfile` loop, non-blocking, ≤ 2 MiB per call, poll() on EAGAIN' },
]

interface Sample {
  gbps: number
  cpuS: number
  sinkWallS: number
  senderWallS: number
  voluntarySwitches: number
  eagain: number
}

interface Tools {
  sink: string
  cLoop: string
  worker: string
}

function senderCommand(tools: Tools, sender: Sender, port: number, file: string, size: number, deadline: number): [string, string[]] {
  if (sender.key === 'c') return [tools.cLoop, [String(port), file, String(deadline)]]
  if (sender.key === 'c-nonblock') return [tools.cLoop, [String(port), file, String(deadline), 'nonblock']]
  return [process.execPath, [tools.worker, sender.key, String(port), file, String(size), String(deadline)]]
}

async function measure(tools: Tools, sender: Sender, file: string, size: number, deadline: number, failures: string[]): Promise<Sample | undefined> {
  const sink = new Child(tools.sink, ['tcp', String(deadline)], 'sink')
  const children = [sink]
  return withChildren(children, async () => {
    const port = number(await sink.next(5000), 'port')
    const [command, args] = senderCommand(tools, sender, port, file, size, deadline)
    const child = new Child(command, args, `bulk ${sender.key}`)
    children.push(child)
    const [sent, received] = await Promise.all([child.next(deadline * 1000), sink.next(deadline * 1000)])
    const [senderExit, sinkExit] = await Promise.all([child.exited(10_000), sink.exited(10_000)])
    const bytesSent = number(sent, 'bytes')
    const bytesReceived = number(received, 'bytes')
    if (bytesSent !== size || bytesReceived !== size || senderExit !== 0 || sinkExit !== 0) {
      failures.push(`bulk ${sender.key}: sent ${bytesSent}, received ${bytesReceived} of ${size} bytes (exit codes ${senderExit}, ${sinkExit})`)
      return undefined
    }
    const sinkWallS = number(received, 'wallNs') / 1e9
    return {
      gbps: size / 1e9 / sinkWallS,
      cpuS: (number(sent, 'cpuUserUs') + number(sent, 'cpuSysUs')) / 1e6,
      sinkWallS,
      senderWallS: number(sent, 'senderWallNs') / 1e9,
      voluntarySwitches: number(sent, 'voluntarySwitches'),
      eagain: number(sent, 'eagain'),
    }
  }).catch((error: unknown) => {
    failures.push(`bulk ${sender.key}: ${(error as Error).message}`)
    return undefined
  })
}

/** `strace -c -f` of one send: which syscalls, how many, how many failed (EAGAIN shows here). */
async function strace(tools: Tools, sender: Sender, file: string, size: number, deadline: number): Promise<StraceRow[] | string> {
  const output = tempPath(`strace-${sender.key}.txt`)
  const sink = new Child(tools.sink, ['tcp', String(deadline)], 'sink')
  const children = [sink]
  try {
    return await withChildren(children, async () => {
      const port = number(await sink.next(5000), 'port')
      const [command, args] = senderCommand(tools, sender, port, file, size, deadline)
      const traced = new Child('strace', ['-c', '-f', '-o', output, command, ...args], `strace ${sender.key}`)
      children.push(traced)
      await Promise.all([traced.next(deadline * 1000), sink.next(deadline * 1000)])
      if ((await traced.exited(10_000)) !== 0) return `strace failed: ${traced.stderr.trim()}`
      return parseStraceSummary(output)
    })
  } catch (error) {
    return `strace failed: ${(error as Error).message}`
  } finally {
    fs.rmSync(output, { force: true })
  }
}

export async function runBulk(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const size = options.smoke ? 8 * MiB : GiB
  const deadline = options.smoke ? 20 : 120
  const tools: Tools = { sink: compileC('sink'), cLoop: compileC('sendfile_loop'), worker: await buildWorker('bulk-sender') }
  const file = ensureFixture(size)
  warm(file)
  const failures: string[] = []
  const samples = new Map<string, Sample[]>(SENDERS.map((sender) => [sender.key, []]))
  const perRun: Array<Map<string, Sample>> = []

  for (let run = 0; run < options.runs; run++) {
    const thisRun = new Map<string, Sample>()
    // Rotating the order spreads any drift (thermal, page cache, TIME_WAIT) over all senders.
    for (let i = 0; i < SENDERS.length; i++) {
      const sender = SENDERS[(i + run) % SENDERS.length]
      log(`bulk run ${run + 1}/${options.runs}: ${sender.key}`)
      await waitForQuiet(`bulk ${sender.key}`, options)
      const sample = await measure(tools, sender, file, size, deadline, failures)
      if (sample === undefined) continue
      samples.get(sender.key)?.push(sample)
      thisRun.set(sender.key, sample)
    }
    perRun.push(thisRun)
  }

  // Ratios inside one run, then their median: runs never mix.
  const withinRuns = (key: string, baseline: string, of: (ours: Sample, theirs: Sample) => number) =>
    median(perRun.flatMap((run) => (run.has(key) && run.has(baseline) ? [of(run.get(key) as Sample, run.get(baseline) as Sample)] : [])))
  const speedVs = (key: string, baseline: string) => withinRuns(key, baseline, (ours, theirs) => ours.gbps / theirs.gbps)
  const cpuAbove = (key: string, baseline: string) => withinRuns(key, baseline, (ours, theirs) => ours.cpuS - theirs.cpuS)
  const med = (key: string, field: keyof Sample) => median((samples.get(key) ?? []).map((sample) => sample[field]))
  // The faster of the two C loops in each run: the goal is to match C whichever way C does it.
  const fasterCOf = (run: Map<string, Sample>) => Math.max(...['c', 'c-nonblock'].flatMap((key) => (run.has(key) ? [(run.get(key) as Sample).gbps] : [])))
  const speedVsFasterC = (key: string) =>
    median(perRun.flatMap((run) => (run.has(key) && Number.isFinite(fasterCOf(run)) ? [(run.get(key) as Sample).gbps / fasterCOf(run)] : [])))

  const rows = SENDERS.map((sender) => [
    sender.label,
    fixed(med(sender.key, 'gbps')),
    (samples.get(sender.key) ?? []).map((sample) => fixed(sample.gbps)).join(', '),
    ratio(speedVs(sender.key, 'c')),
    ratio(speedVsFasterC(sender.key)),
    ratio(speedVs(sender.key, 'pipeline-default')),
    fixed(med(sender.key, 'cpuS'), 3),
    sender.key === 'c' ? '' : `${cpuAbove(sender.key, 'c') >= 0 ? '+' : ''}${fixed(cpuAbove(sender.key, 'c'), 3)}`,
    fixed(med(sender.key, 'voluntarySwitches'), 0),
    fixed(med(sender.key, 'eagain'), 0),
  ])

  const fasterC =
    'the faster of the two C `sendfile` loops in each run (bench/c/sendfile_loop.c, blocking socket; or non-blocking, ≤ 2 MiB per call, poll() on EAGAIN)'
  const targets: Target[] = []
  const scale = `${sizeLabel(size)} → 1 socket`
  for (const key of ['sendFile', 'sendfile']) {
    const label = key === 'sendFile' ? '`sendFile(socket, path)`' : '`await sendfile(socketFd(socket), fd, 0, size)`'
    const cpu = cpuAbove(key, 'c')
    targets.push(
      ratioTarget(`${label} throughput, ${scale}`, fasterC, speedVsFasterC(key), '≥', 1.0),
      {
        what: `${label} CPU, ${scale}`,
        baseline: 'C `sendfile` loop, blocking socket (bench/c/sendfile_loop.c), + 0.1 s',
        goal: '≤ C + 0.100 s',
        measured: `${cpu >= 0 ? '+' : ''}${fixed(cpu, 3)} s`,
        met: cpu <= 0.1,
        margin: Number.isFinite(cpu) ? `${fixed(Math.abs(0.1 - cpu), 3)} s ${cpu <= 0.1 ? 'to spare' : 'over'}` : '',
      },
      ratioTarget(
        `${label} throughput, ${scale}`,
        '`pipeline(createReadStream(file), socket)`, default 64 KiB chunks',
        speedVs(key, 'pipeline-default'),
        '≥',
        3.5,
      ),
    )
  }
  const gb = (key: string) => fixed(med(key, 'gbps'))
  const headlines: Headline[] = [
    {
      scenario: `${sizeLabel(size)} → one TCP socket`,
      ours: `\`sendFile\` ${gb('sendFile')} GB/s, ${fixed(med('sendFile', 'cpuS'), 2)} s CPU`,
      baselines: `C sendfile loop ${gb('c')} (non-blocking ${gb('c-nonblock')}); \`pipeline(createReadStream)\` ${gb('pipeline-default')} (1 MiB chunks ${gb('pipeline-1m')})`,
    },
  ]

  let diagnostics = ''
  if (options.diagnose) {
    const traced: string[] = []
    for (const key of ['sendFile', 'sendfile', 'c', 'c-nonblock', 'pipeline-default']) {
      const sender = SENDERS.find((candidate) => candidate.key === key) as Sender
      log(`bulk strace -c -f: ${key}`)
      await waitForQuiet(`bulk strace ${key}`, options)
      const rows = await strace(tools, sender, file, size, deadline * 3)
      traced.push(typeof rows === 'string' ? `${sender.label}: ${rows}` : `${sender.label}:\n\n${straceTable(rows)}`)
    }
    diagnostics = `\n\n\`strace -c -f\` of one extra send each (strace slows the sender; only the counts matter), top syscalls by calls:\n\n${traced.join('\n\n')}`
  }

  const markdown = [
    `${sizeLabel(size)} file (random data, page cache warm) to one TCP connection on 127.0.0.1; receiver: bench/c/sink.c reading 1 MiB at a time. GB/s = 10^9 bytes per second from the receiver's first byte to its EOF. CPU = the sender process's user+sys over its send, all threads. Medians of ${options.runs} run(s); ratios are taken inside each run, then the median.`,
    '',
    table(
      [
        'Sender',
        'GB/s',
        'runs',
        'vs C loop (blocking)',
        'vs faster C loop',
        'vs default pipeline',
        'CPU s',
        'CPU − C loop (s)',
        'voluntary ctx switches',
        'EAGAIN seen by the caller',
      ],
      rows,
    ),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'bulk', title: '1. Bulk: one file, one socket', markdown: markdown + diagnostics, targets, headlines, failures }
}

if (require.main === module) runStandalone(runBulk)
