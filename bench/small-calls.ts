/**
 * Scenario 3, small calls: one 4 KiB sendfileSync per call into a Unix socket drained by the C
 * sink, against the same loop of raw sendfile(2) in C (bench/c/small_calls.c). The difference
 * per call is what the binding costs. A second table prices the call that finds the socket full
 * (EAGAIN), the path every non-blocking sendfileSync loop takes when it outruns its reader.
 *
 *   node --import tsx bench/small-calls.ts [--smoke] [--runs N]
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
  straceTable,
  table,
  targetTable,
  tempPath,
  waitForQuiet,
  warm,
  withChildren,
  runStandalone,
  amountTarget,
  type BenchOptions,
  type Headline,
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Writer {
  key: string
  label: string
}

const WRITERS: Writer[] = [
  { key: 'api', label: '`sendfileSync(fd, file, offset, 4096)` (public API)' },
  { key: 'binding', label: '`binding.sendfileSync` (the native function it wraps)' },
  { key: 'c', label: 'C `sendfile(2)` (bench/c/small_calls.c)' },
]

interface Sample {
  nsPerCall: number
  cpuNsPerCall: number
  eagain: number
}

interface Tools {
  sink: string
  cWriter: string
  worker: string
}

const CHUNK = 4 * KiB

async function measureSend(
  tools: Tools,
  writer: Writer,
  file: string,
  chunks: number,
  warmup: number,
  deadline: number,
  failures: string[],
  straceOutput?: string,
): Promise<Sample | undefined> {
  const socketPath = tempPath(`small-${writer.key}.sock`)
  const sink = new Child(tools.sink, ['unix', socketPath, String(deadline)], 'sink')
  const children = [sink]
  return withChildren(children, async () => {
    await sink.next(5000)
    const args = [socketPath, file, String(chunks), String(CHUNK), String(warmup), String(deadline)]
    const [command, ...commandArgs] = writer.key === 'c' ? [tools.cWriter, 'send', ...args] : [process.execPath, tools.worker, 'send', writer.key, ...args]
    const child = straceOutput
      ? new Child('strace', ['-c', '-f', '-o', straceOutput, command, ...commandArgs], `strace small-calls ${writer.key}`)
      : new Child(command, commandArgs, `small-calls ${writer.key}`)
    children.push(child)
    const [sent, received] = await Promise.all([child.next(deadline * 1000), sink.next(deadline * 1000)])
    const [writerExit, sinkExit] = await Promise.all([child.exited(10_000), sink.exited(10_000)])
    const expected = (chunks + warmup) * CHUNK
    if (number(sent, 'bytes') !== expected || number(received, 'bytes') !== expected || writerExit !== 0 || sinkExit !== 0) {
      failures.push(
        `small calls ${writer.key}: sent ${number(sent, 'bytes')}, received ${number(received, 'bytes')} of ${expected} bytes (exit codes ${writerExit}, ${sinkExit})`,
      )
      return undefined
    }
    const calls = number(sent, 'calls')
    return {
      nsPerCall: number(sent, 'wallNs') / calls,
      cpuNsPerCall: ((number(sent, 'cpuUserUs') + number(sent, 'cpuSysUs')) * 1000) / calls,
      eagain: number(sent, 'eagain'),
    }
  })
    .catch((error: unknown) => {
      failures.push(`small calls ${writer.key}: ${(error as Error).message}`)
      return undefined
    })
    .finally(() => fs.rmSync(socketPath, { force: true }))
}

async function measureEagain(tools: Tools, writer: Writer, file: string, calls: number, deadline: number, failures: string[]): Promise<number | undefined> {
  const args = [file, String(calls), String(CHUNK), String(deadline)]
  const child =
    writer.key === 'c'
      ? new Child(tools.cWriter, ['eagain', ...args], 'small_calls eagain')
      : new Child(process.execPath, [tools.worker, 'eagain', writer.key, ...args], `small-calls eagain ${writer.key}`)
  return withChildren([child], async () => {
    const result = await child.next(deadline * 1000)
    if ((await child.exited(10_000)) !== 0) throw new Error(`exit code ${child.stderr}`)
    return number(result, 'wallNs') / number(result, 'calls')
  }).catch((error: unknown) => {
    failures.push(`small calls eagain ${writer.key}: ${(error as Error).message}`)
    return undefined
  })
}

export async function runSmallCalls(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const chunks = options.smoke ? 2000 : 200_000
  const warmup = options.smoke ? 200 : 20_000
  const eagainCalls = options.smoke ? 200 : 20_000
  const deadline = options.smoke ? 20 : 60
  const tools: Tools = { sink: compileC('sink'), cWriter: compileC('small_calls'), worker: await buildWorker('small-calls-writer') }
  // 1 MiB of distinct chunks: always in the page cache, never the same page twice in a row.
  const file = ensureFixture(MiB)
  warm(file)
  const failures: string[] = []
  const samples = new Map<string, Sample[]>(WRITERS.map((writer) => [writer.key, []]))
  const eagainSamples = new Map<string, number[]>(WRITERS.map((writer) => [writer.key, []]))
  const overheads = new Map<string, number[]>(WRITERS.map((writer) => [writer.key, []]))

  for (let run = 0; run < options.runs; run++) {
    const thisRun = new Map<string, Sample>()
    for (let i = 0; i < WRITERS.length; i++) {
      const writer = WRITERS[(i + run) % WRITERS.length]
      log(`small calls run ${run + 1}/${options.runs}: ${writer.key}`)
      await waitForQuiet(`small calls ${writer.key}`, options)
      const sample = await measureSend(tools, writer, file, chunks, warmup, deadline, failures)
      if (sample !== undefined) {
        samples.get(writer.key)?.push(sample)
        thisRun.set(writer.key, sample)
      }
      await waitForQuiet(`small calls eagain ${writer.key}`, options)
      const eagain = await measureEagain(tools, writer, file, eagainCalls, deadline, failures)
      if (eagain !== undefined) eagainSamples.get(writer.key)?.push(eagain)
    }
    // Overhead inside one run: ours minus C, same machine state.
    const c = thisRun.get('c')
    for (const [key, sample] of thisRun) if (c !== undefined) overheads.get(key)?.push(sample.nsPerCall - c.nsPerCall)
  }

  const med = (key: string, field: keyof Sample) => median((samples.get(key) ?? []).map((sample) => sample[field]))
  const cEagain = median(eagainSamples.get('c') ?? [])
  const rows = WRITERS.map((writer) => [
    writer.label,
    fixed(med(writer.key, 'nsPerCall'), 0),
    (samples.get(writer.key) ?? []).map((sample) => fixed(sample.nsPerCall, 0)).join(', '),
    writer.key === 'c' ? '' : `+${fixed(median(overheads.get(writer.key) ?? []), 0)}`,
    fixed(med(writer.key, 'cpuNsPerCall'), 0),
    fixed(med(writer.key, 'eagain'), 0),
  ])
  const eagainRows = WRITERS.map((writer) => {
    const ns = median(eagainSamples.get(writer.key) ?? [])
    return [writer.label, fixed(ns, 0), writer.key === 'c' ? '' : `+${fixed(ns - cEagain, 0)}`]
  })

  const overhead = median(overheads.get('api') ?? [])
  const targets: Target[] = [
    amountTarget(
      '`sendfileSync` overhead per 4 KiB call into a Unix socket',
      'C `sendfile(2)` loop, same calls (bench/c/small_calls.c), + 1000 ns',
      overhead,
      '≤',
      1000,
      'ns',
      0,
    ),
  ]
  const headlines: Headline[] = [
    {
      scenario: '`sendfileSync` 4 KiB calls',
      ours: `${fixed(med('api', 'nsPerCall'), 0)} ns per call`,
      baselines: `C \`sendfile\` loop ${fixed(med('c', 'nsPerCall'), 0)} ns`,
    },
  ]

  let diagnostics = ''
  if (options.diagnose) {
    const traced: string[] = []
    // Fewer calls than the timed loop: under strace each syscall costs tens of µs.
    const tracedChunks = Math.min(chunks, 20_000)
    for (const writer of WRITERS) {
      log(`small calls strace -c -f: ${writer.key}`)
      await waitForQuiet(`small calls strace ${writer.key}`, options)
      const output = tempPath(`strace-small-${writer.key}.txt`)
      try {
        const sample = await measureSend(tools, writer, file, tracedChunks, 0, deadline * 3, failures, output)
        traced.push(sample ? `${writer.label}:\n\n${straceTable(parseStraceSummary(output), 6)}` : `${writer.label}: the traced run failed`)
      } finally {
        fs.rmSync(output, { force: true })
      }
    }
    diagnostics = `\n\n\`strace -c -f\` of one extra send loop each (${tracedChunks} calls; strace slows them, only the counts matter), top syscalls by calls: a syscall beside \`sendfile\` with as many calls is paid on every call:\n\n${traced.join('\n\n')}`
  }

  const markdown = [
    `${options.smoke ? chunks : `${chunks / 1000}k`} timed calls of ${CHUNK / KiB} KiB (after ${warmup} untimed) from a 1 MiB file into a non-blocking Unix stream socket drained by bench/c/sink.c (1 MiB reads). ns/call = the writer's wall time over the timed loop / successful calls (a full socket makes the Node loop yield with setImmediate and the C loop poll(); both are counted in the EAGAIN column). CPU ns/call = the writer's user+sys over the same loop / calls. Overhead = ours − C inside each run, then the median of ${options.runs} run(s).`,
    '',
    table(['Writer', 'ns/call', 'runs', 'overhead vs C (ns)', 'CPU ns/call', 'EAGAIN during the loop'], rows),
    '',
    `A call that finds the socket full (${eagainCalls} calls into a Unix socket whose peer never reads; median of ${options.runs}):`,
    '',
    table(['Writer', 'ns per EAGAIN call', 'vs C (ns)'], eagainRows),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'small-calls', title: '3. Small calls: 4 KiB sendfileSync', markdown: markdown + diagnostics, targets, headlines, failures }
}

if (require.main === module) runStandalone(runSmallCalls)
