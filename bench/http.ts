/**
 * Scenario 5, HTTP file serving, in one run on the same files (1 KiB, 16 KiB, 256 KiB, 1 MiB,
 * 64 MiB), each server in its own process:
 *
 * - ours: `createStaticHandler` and `serveFile` (zero-copy);
 * - Node's in-memory ceiling: `res.end(buffer)` of the file read at startup (no file I/O at all);
 * - `pipeline(fs.createReadStream(path), res)`, the usual node:http way, and the `send` package;
 * - Bun's `new Response(Bun.file(path))` when Bun is installed (node_modules/.bin/bun first);
 * - nginx (one process, sendfile on, access log off) when it is installed.
 *
 * The load is wrk on keep-alive connections when it is installed, else bench/c/http_load.c (one
 * thread, like wrk -t1). For each server and file: requests/s, GB/s of body, and the server's
 * CPU time per request (utime + stime from /proc/<pid>/stat over the window, all its threads).
 * Then, bounded, 1000 keep-alive connections each fetch the 64 MiB file from
 * `createStaticHandler`, whose event-loop delay is measured inside the server.
 *
 *   node --import tsx bench/http.ts [--smoke] [--runs N] [--no-nginx] [--no-bun]
 *       [--duration S] [--connections N] [--threads N] [--sizes 1kib,16kib,256kib,1mib,64mib]
 *       [--servers static,serve-file,buffer,stream,send,bun,nginx] [--loop-connections N]
 *
 * Environment variables BENCH_DURATION, BENCH_CONNECTIONS, BENCH_THREADS and
 * BENCH_LOOP_CONNECTIONS set the same. `--sizes` and `--servers` narrow a run for development.
 * Before any timing, every server's answer for every file is fetched and compared with the file.
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import { isNative } from '..'
import {
  amountTarget,
  fixed,
  KiB,
  log,
  median,
  MiB,
  ratio,
  ratioTarget,
  runStandalone,
  sizeLabel,
  table,
  targetTable,
  waitForQuiet,
  type BenchOptions,
  type Headline,
  type Json,
  type ScenarioResult,
  type Target,
} from './lib/common'
import { boundedLoad, cLoad, type LoadGenerator, wrkLoad } from './lib/http-load'
import {
  findBun,
  type HttpServer,
  NODE_LABELS,
  type NodeKind,
  nginxVersion,
  processCpuS,
  type ServerKey,
  startBun,
  startNginx,
  startNodeServer,
  verify,
  which,
} from './lib/http-servers'

interface Size {
  name: string
  label: string
  bytes: number
  /** Measured in every run (the sizes with goals); the others in the first run only, to fit the 15 minutes. */
  everyRun: boolean
}

const SIZES: Size[] = [
  { name: '1kib.bin', label: '1 KiB', bytes: KiB, everyRun: true },
  { name: '16kib.bin', label: '16 KiB', bytes: 16 * KiB, everyRun: true },
  { name: '256kib.bin', label: '256 KiB', bytes: 256 * KiB, everyRun: false },
  { name: '1mib.bin', label: '1 MiB', bytes: MiB, everyRun: true },
  { name: '64mib.bin', label: '64 MiB', bytes: 64 * MiB, everyRun: false },
]
/** Smoke: tiny files, one with goals of each kind (small, large). */
const SMOKE_SIZES = ['16 KiB', '1 MiB']

const NODE_KINDS: NodeKind[] = ['static', 'serve-file', 'buffer', 'stream', 'send']
const SERVER_KEYS: ServerKey[] = [...NODE_KINDS, 'bun', 'nginx']

/** Goals on `createStaticHandler` requests/s over a baseline's, from the same run. */
const GOALS: Array<{ size: string; baseline: ServerKey; goal: number }> = [
  { size: '1 KiB', baseline: 'buffer', goal: 0.8 },
  { size: '1 KiB', baseline: 'bun', goal: 1.0 },
  { size: '16 KiB', baseline: 'buffer', goal: 0.8 },
  { size: '16 KiB', baseline: 'bun', goal: 1.0 },
  { size: '1 MiB', baseline: 'buffer', goal: 0.9 },
  { size: '16 KiB', baseline: 'stream', goal: 1.3 },
  { size: '1 MiB', baseline: 'stream', goal: 1.6 },
]
/** The event-loop delay goal with 1000 connections downloading the largest file. */
const LOOP_P99_GOAL_MS = 5

interface Config {
  duration: number
  connections: number
  threads: number
  /** Seconds of load before each server's first measurement, untimed (JIT, connection pools). */
  warmup: number
  sizes: Size[]
  servers: Set<ServerKey>
  loopConnections: number
  /** Fetches per connection in the event-loop delay run. */
  loopFetches: number
}

const sizeKey = (size: Size) => size.label.replace(' ', '').toLowerCase()

function config(options: BenchOptions): Config {
  const args = process.argv.slice(2)
  const value = (name: string): string | undefined => {
    const at = args.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`))
    if (at === -1) return undefined
    return args[at].includes('=') ? args[at].split('=')[1] : args[at + 1]
  }
  const integer = (name: string, env: string, fallback: number): number => {
    const raw = value(name) ?? process.env[env]
    const parsed = raw === undefined ? fallback : Number(raw)
    if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`)
    return parsed
  }
  const list = <T extends string>(name: string, all: T[], fallback: T[]): T[] => {
    const raw = value(name)
    if (raw === undefined) return fallback
    const chosen = raw.split(',').filter(Boolean)
    for (const item of chosen) if (!all.includes(item as T)) throw new Error(`--${name}: no ${item} (one of ${all.join(', ')})`)
    return chosen as T[]
  }
  // On a small machine wrk gets fewer threads than cores, so the server has one to itself.
  const defaultThreads = Math.max(1, Math.min(4, os.availableParallelism() - 1))
  const sizeKeys = list('sizes', SIZES.map(sizeKey), SIZES.filter((size) => !options.smoke || SMOKE_SIZES.includes(size.label)).map(sizeKey))
  return {
    duration: integer('duration', 'BENCH_DURATION', options.smoke ? 1 : 3),
    connections: integer('connections', 'BENCH_CONNECTIONS', options.smoke ? 4 : 64),
    threads: integer('threads', 'BENCH_THREADS', options.smoke ? 1 : defaultThreads),
    warmup: options.smoke ? 0 : 1,
    sizes: SIZES.filter((size) => sizeKeys.includes(sizeKey(size))),
    servers: new Set(list('servers', SERVER_KEYS, SERVER_KEYS)),
    loopConnections: integer('loop-connections', 'BENCH_LOOP_CONNECTIONS', options.smoke ? 50 : 1000),
    // Smoke: two, so the keep-alive path of the bounded client runs too; full: one, so 1000 × 64 MiB stays ~20 s.
    loopFetches: options.smoke ? 2 : 1,
  }
}

function format(value: number, digits = 0): string {
  return Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
}

/** One measurement of one server on one file. */
interface Cell {
  requestsPerS: number
  gbPerS: number
  cpuUsPerRequest: number
  errors: string
}

async function measure(load: LoadGenerator, server: HttpServer, size: Size, seconds: number): Promise<Cell> {
  const cpuBefore = processCpuS(server.pid)
  const result = await load.run(server.port, size.name, seconds, server.headerBytes.get(size.name) ?? 0)
  const cpuS = processCpuS(server.pid) - cpuBefore
  // Counted in bodies, not in complete responses: at 64 MiB a window holds only a few rounds of
  // responses, and counting whole ones would round the rate down by up to one round.
  const responses = result.bodyBytes / size.bytes
  return {
    requestsPerS: responses / result.seconds,
    gbPerS: result.bodyBytes / result.seconds / 1e9,
    cpuUsPerRequest: (cpuS / responses) * 1e6,
    errors: result.errors,
  }
}

interface LoopRun {
  connections: number
  fetches: number
  file: Size
  wallS: number
  gbPerS: number
  responses: number
  errors: string
  inside: Json
}

/**
 * The bounded run: `connections` keep-alive connections each fetch the file `fetches` times from
 * the server, whose event-loop delay is measured from just before the first connect to the last
 * response (bench/http-server.ts's SIGUSR2 window).
 */
async function loopDelayRun(server: HttpServer, file: Size, cfg: Config): Promise<LoopRun> {
  const bytes = cfg.loopConnections * cfg.loopFetches * file.bytes
  // Generous: 0.5 GB/s is a tenth of what this machine does.
  const deadlineS = Math.ceil(Math.max(30, bytes / 0.5e9))
  server.child.process.kill('SIGUSR2')
  await server.child.next(10_000)
  const result = await boundedLoad(server.port, file.name, cfg.loopConnections, cfg.loopFetches, deadlineS)
  server.child.process.kill('SIGUSR2')
  const inside = await server.child.next(10_000)
  return {
    connections: cfg.loopConnections,
    fetches: cfg.loopFetches,
    file,
    wallS: result.seconds,
    gbPerS: result.bodyBytes / result.seconds / 1e9,
    responses: result.requests,
    errors: result.errors,
    inside,
  }
}

function optional(message: Json | undefined, key: string): number {
  const value = message?.[key]
  return typeof value === 'number' ? value : Number.NaN
}

export async function runHttp(options: BenchOptions): Promise<ScenarioResult> {
  const cfg = config(options)
  const wrk = which('wrk')
  const load = wrk ? wrkLoad(wrk, cfg.threads, cfg.connections) : cLoad(cfg.connections)
  const failures: string[] = []

  // What was left out, and why: absent tools are skipped with a note, never a failure.
  const bun = options.bun ? findBun() : { bun: undefined, version: undefined, note: 'Bun left out (--no-bun)' }
  const nginx = options.nginx ? which('nginx') : undefined
  const nginxRelease = nginx ? nginxVersion(nginx) : undefined
  const nginxNote = nginxRelease ? `nginx ${nginxRelease}` : options.nginx ? 'nginx left out: not installed' : 'nginx left out (--no-nginx)'
  const absent = new Map<ServerKey, string>()
  if (!bun.bun) absent.set('bun', bun.note)
  if (!nginx) absent.set('nginx', nginxNote)
  for (const note of absent.values()) log(`http: ${note}`)

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-bench-'))
  const root = path.join(work, 'public')
  fs.mkdirSync(root)
  // nginx and Bun must be able to read them whatever user they run as.
  fs.chmodSync(work, 0o755)
  const files = cfg.sizes.map((size) => {
    const data = crypto.randomBytes(size.bytes)
    fs.writeFileSync(path.join(root, size.name), data, { mode: 0o644 })
    return { ...size, sha256: crypto.createHash('sha256').update(data).digest('hex') }
  })
  const loopFile = cfg.sizes.at(-1)

  const cellsPerServer = cfg.sizes.reduce((sum, size) => sum + (size.everyRun ? options.runs : 1), 0)
  // The servers end by themselves after this, should the bench forget them.
  const deadlineS = cellsPerServer * SERVER_KEYS.length * (cfg.duration + cfg.warmup + 5) + 600

  // "<size>/<server>" → the cell of each run (index = run).
  const cells = new Map<string, Cell[]>()
  const servers: HttpServer[] = []
  let loop: LoopRun | undefined
  try {
    // Started together (each Node server takes a second or two to load), listed in a fixed order.
    const started = await Promise.all(
      SERVER_KEYS.filter((key) => cfg.servers.has(key) && !absent.has(key)).map(async (key) => {
        try {
          if (key === 'bun') return bun.bun && bun.version ? await startBun(bun.bun, bun.version, root, deadlineS) : undefined
          if (key === 'nginx') return nginx && nginxRelease ? await startNginx(nginx, nginxRelease, root, work, deadlineS) : undefined
          return await startNodeServer(key, root, deadlineS)
        } catch (error) {
          failures.push(`http: starting ${key}: ${(error as Error).message}`)
          return undefined
        }
      }),
    )
    servers.push(...started.filter((server): server is HttpServer => server !== undefined))
    // A server that sends wrong bytes is reported and not timed.
    for (const server of [...servers]) {
      try {
        await verify(server, files)
      } catch (error) {
        failures.push(`http: ${server.key}: ${(error as Error).message}`)
        servers.splice(servers.indexOf(server), 1)
        server.child.kill()
      }
    }

    const warmed = new Set<ServerKey>()
    for (let run = 0; run < options.runs; run++) {
      for (const size of cfg.sizes) {
        if (run > 0 && !size.everyRun) continue
        for (let i = 0; i < servers.length; i++) {
          const server = servers[(i + run) % servers.length]
          log(`http ${size.label} run ${run + 1}/${options.runs}: ${server.key}`)
          await waitForQuiet(`http ${size.label} ${server.key}`, options)
          try {
            if (cfg.warmup > 0 && !warmed.has(server.key)) await load.run(server.port, size.name, cfg.warmup, server.headerBytes.get(size.name) ?? 0)
            warmed.add(server.key)
            const cell = await measure(load, server, size, cfg.duration)
            const values = cells.get(`${size.label}/${server.key}`) ?? []
            values[run] = cell
            cells.set(`${size.label}/${server.key}`, values)
          } catch (error) {
            failures.push(`http ${size.label} ${server.key}: ${(error as Error).message}`)
          }
        }
      }
    }

    const statics = servers.find((server) => server.key === 'static')
    if (statics && loopFile) {
      log(`http event-loop delay: ${cfg.loopConnections} connections × ${loopFile.label} × ${cfg.loopFetches}`)
      await waitForQuiet('http event-loop delay', options)
      try {
        loop = await loopDelayRun(statics, loopFile, cfg)
        if (loop.errors) failures.push(`http event-loop delay run: ${loop.errors}`)
      } catch (error) {
        failures.push(`http event-loop delay run: ${(error as Error).message}`)
      }
    }
  } finally {
    for (const server of servers) server.child.kill()
    await Promise.all(servers.map((server) => server.child.exited(5000)))
    fs.rmSync(work, { recursive: true, force: true })
  }

  const measured = (size: string, key: ServerKey) => (cells.get(`${size}/${key}`) ?? []).filter((cell): cell is Cell => cell !== undefined)
  const medianOf = (size: string, key: ServerKey, pick: (cell: Cell) => number) => median(measured(size, key).map(pick))
  /** The median over runs of ours / theirs, each ratio taken inside one run. */
  const speedVs = (size: string, key: ServerKey, baseline: ServerKey) => {
    const ours = cells.get(`${size}/${key}`) ?? []
    const theirs = cells.get(`${size}/${baseline}`) ?? []
    return median(ours.flatMap((cell, run) => (cell && theirs[run] ? [cell.requestsPerS / theirs[run].requestsPerS] : [])))
  }
  const labelOf = (key: ServerKey) =>
    servers.find((server) => server.key === key)?.label ??
    (key === 'bun' ? 'Bun: `new Response(Bun.file(path))`' : key === 'nginx' ? 'nginx, `sendfile on`' : NODE_LABELS[key])

  const rows = cfg.sizes.flatMap((size) =>
    servers.map((server) => {
      const runs = measured(size.label, server.key)
      const errors = [...new Set(runs.map((cell) => cell.errors).filter(Boolean))].join('; ')
      const middle = (pick: (cell: Cell) => number) => medianOf(size.label, server.key, pick)
      return [
        size.label,
        `${server.label}${errors ? ` (${errors})` : ''}`,
        format(middle((cell) => cell.requestsPerS)),
        runs.map((cell) => format(cell.requestsPerS)).join(', '),
        fixed(
          middle((cell) => cell.gbPerS),
          3,
        ),
        format(
          middle((cell) => cell.cpuUsPerRequest),
          1,
        ),
        ratio(speedVs(size.label, server.key, 'buffer')),
        ratio(speedVs(size.label, server.key, 'stream')),
      ]
    }),
  )

  const connectionsText = `${cfg.connections} keep-alive connections`
  const baselineText = (key: ServerKey) =>
    absent.has(key)
      ? `${key === 'bun' ? 'Bun' : 'nginx'}: not run (${absent.get(key)})`
      : `${labelOf(key)}${NODE_KINDS.includes(key as NodeKind) ? ` (bench/http-server.ts \`${key}\`)` : ''}`
  const targets: Target[] = GOALS.map(({ size, baseline, goal }) =>
    ratioTarget(`\`createStaticHandler\` requests/s, ${size} file, ${connectionsText}`, baselineText(baseline), speedVs(size, 'static', baseline), '≥', goal),
  )
  const loopWhat = loop
    ? `${loop.connections} keep-alive connections × ${loop.file.label}, ${loop.fetches} fetch${loop.fetches > 1 ? 'es' : ''} each`
    : `${cfg.loopConnections} keep-alive connections × ${loopFile?.label ?? 'the largest file'}`
  targets.push(
    amountTarget(
      `\`createStaticHandler\` server's event-loop delay p99 (monitorEventLoopDelay, 1 ms resolution), ${loopWhat}`,
      'none (absolute); measured inside the server from just before the first connect to the last response',
      optional(loop?.inside, 'loopP99Ms'),
      '<',
      LOOP_P99_GOAL_MS,
      'ms',
    ),
  )

  const perServer = (size: string, keys: ServerKey[]) =>
    keys
      .filter((key) => !absent.has(key) && cfg.servers.has(key))
      .map((key) => `${HEADLINE_NAMES[key]} ${format(medianOf(size, key, (cell) => cell.requestsPerS))}`)
      .join(', ')
  const skipped = [...absent.keys()].map((key) => `${HEADLINE_NAMES[key]} not run`)
  const headlines: Headline[] = cfg.sizes
    .filter((size) => size.everyRun)
    .map((size) => ({
      scenario: `HTTP ${size.label} file, ${cfg.connections} connections`,
      ours: `\`createStaticHandler\` ${format(medianOf(size.label, 'static', (cell) => cell.requestsPerS))} req/s, ${format(
        medianOf(size.label, 'static', (cell) => cell.cpuUsPerRequest),
        1,
      )} µs CPU/req`,
      baselines: [`req/s: ${perServer(size.label, ['buffer', 'bun', 'nginx', 'send', 'stream'])}`, ...skipped].join('; '),
    }))
  if (loop) {
    headlines.push({
      scenario: `HTTP ${loop.connections} connections × ${loop.file.label}`,
      ours: `\`createStaticHandler\` loop delay p99 ${fixed(optional(loop.inside, 'loopP99Ms'))} ms, ${fixed(loop.gbPerS)} GB/s`,
      baselines: `goal < ${LOOP_P99_GOAL_MS} ms (absolute)`,
    })
  }

  const loopTable = loop
    ? table(
        [
          'connections × file × fetches',
          'wall s',
          'GB/s',
          'responses',
          'loop delay p99 ms',
          'max ms',
          'mean ms',
          'samples',
          'event-loop utilization',
          'server CPU s',
        ],
        [
          [
            `${loop.connections} × ${loop.file.label} × ${loop.fetches}`,
            fixed(loop.wallS, 2),
            fixed(loop.gbPerS, 2),
            `${loop.responses}${loop.errors ? ` (${loop.errors})` : ''}`,
            fixed(optional(loop.inside, 'loopP99Ms')),
            fixed(optional(loop.inside, 'loopMaxMs')),
            fixed(optional(loop.inside, 'loopMeanMs')),
            String(optional(loop.inside, 'loopSamples')),
            fixed(optional(loop.inside, 'eventLoopUtilization')),
            fixed((optional(loop.inside, 'cpuUserUs') + optional(loop.inside, 'cpuSysUs')) / 1e6, 2),
          ],
        ],
      )
    : 'Not measured (see the failures, or `--servers` left `static` out).'
  const runsText =
    options.runs > 1
      ? `Medians of ${options.runs} runs for ${cfg.sizes
          .filter((size) => size.everyRun)
          .map((size) => size.label)
          .join(', ')} (the sizes with goals); ${
          cfg.sizes
            .filter((size) => !size.everyRun)
            .map((size) => size.label)
            .join(', ') || 'no other size'
        } in the first run only, to keep the whole bench under 15 minutes.`
      : 'One run.'
  const markdown = [
    `${load.name}, ${cfg.duration} s per measurement${cfg.warmup ? `, each server warmed with ${cfg.warmup} s of load before its first` : ''}, 127.0.0.1, each server in its own process; native binding: ${isNative}; ${bun.note}; ${nginxNote}. ${runsText} Ratios are taken inside each run (server order rotated per run), then their median.`,
    '',
    `Files: ${cfg.sizes.map((size) => sizeLabel(size.bytes)).join(', ')} of random bytes, in the page cache. Before any timing every server's answer for every file was fetched on one keep-alive connection and its sha256 compared with the file's. Requests/s counts body bytes received ÷ file size ÷ seconds, so a response the window cut short counts by the part delivered; GB/s is body bytes ÷ seconds. Server CPU per request: utime + stime of the server process (all threads) from /proc/<pid>/stat over the window, ÷ those requests (10 ms ticks). nginx runs as one process (\`master_process off\`), \`sendfile on\`, \`tcp_nopush on\`, access log off, no open_file_cache.`,
    '',
    table(
      [
        'file',
        'server',
        'requests/s',
        'runs',
        'GB/s',
        'server CPU µs/request',
        'requests/s vs in-memory ceiling (`res.end(buffer)`, same run)',
        'requests/s vs `createReadStream` (same run)',
      ],
      rows,
    ),
    '',
    `Event-loop delay under load: ${loopWhat} from \`createStaticHandler\` (bench/c/http_load.c's bounded mode; bytes counted), one run. The server measures its own loop delay (\`monitorEventLoopDelay({ resolution: 1 })\`) and reports it on its stdout.`,
    '',
    loopTable,
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'http', title: '5. HTTP file serving', markdown, targets, headlines, failures }
}

/** Short names for the README's headline rows. */
const HEADLINE_NAMES: Record<ServerKey, string> = {
  static: '`createStaticHandler`',
  'serve-file': '`serveFile`',
  buffer: 'in-memory `res.end(buffer)`',
  stream: '`createReadStream`',
  send: '`send`',
  bun: 'Bun',
  nginx: 'nginx',
}

if (require.main === module) runStandalone(runHttp)
