/**
 * Scenario 5, HTTP file serving: createStaticHandler and serveFile (zero-copy) against the usual
 * fs.createReadStream pipe, and nginx (sendfile on) when it is installed, for a 1 MiB and a
 * 16 KiB file, on keep-alive connections from wrk when it is installed, else from
 * bench/c/http_load.c (one thread, the same idea as wrk -t1), in the same run.
 *
 *   node --import tsx bench/http.ts [--smoke] [--runs N] [--no-nginx]
 *       [--duration S] [--connections N] [--threads N]
 *
 * Environment variables BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS set the same.
 * Every server runs in its own process (bench/http-server.ts, or nginx with one worker), so
 * none shares an event loop with the load or another server. Before any timing, every server's
 * answer for every file is fetched and compared with the file.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import { isNative } from '..'
import {
  Child,
  compileC,
  KiB,
  log,
  median,
  MiB,
  number,
  ratio,
  ratioTarget,
  runStandalone,
  table,
  targetTable,
  waitForQuiet,
  withChildren,
  type BenchOptions,
  type Headline,
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Config {
  duration: number
  connections: number
  threads: number
  warmup: number
}

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
  // On a small machine wrk gets fewer threads than cores, so the server has one to itself.
  const defaultThreads = Math.max(1, Math.min(4, os.availableParallelism() - 1))
  return {
    duration: integer('duration', 'BENCH_DURATION', options.smoke ? 1 : 4),
    connections: integer('connections', 'BENCH_CONNECTIONS', options.smoke ? 4 : 64),
    threads: integer('threads', 'BENCH_THREADS', options.smoke ? 1 : defaultThreads),
    warmup: options.smoke ? 0 : 1,
  }
}

function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

/** Processes this scenario started itself (the Node servers and nginx, stopped by SIGTERM). */
const servers: ChildProcess[] = []

function stopServers(): void {
  for (const child of servers.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
}
process.on('exit', stopServers)

/** Rejects when `promise` has not settled in `ms`: every wait here is bounded. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

interface Server {
  key: string
  label: string
  port: number
}

/** Starts bench/http-server.ts in its own process; resolves when it prints its port. */
async function startNodeServer(key: string, label: string, kind: string, root: string): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'http-server.ts'), kind, root], { stdio: ['ignore', 'pipe', 'inherit'] })
  servers.push(child)
  const port = await within(
    new Promise<number>((resolve, reject) => {
      let output = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening (\d+)/.exec(output)
        if (match) resolve(Number(match[1]))
      })
      child.once('exit', (code) => reject(new Error(`${label} server exited with ${code}`)))
    }),
    30_000,
    `starting the ${label} server`,
  )
  return { key, label, port }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo
      probe.close(() => resolve(port))
    })
  })
}

async function waitForPort(port: number, child: ChildProcess, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.exitCode !== null) throw new Error(`${what} exited with ${child.exitCode}`)
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1')
      socket.once('connect', () => {
        socket.destroy()
        resolve(true)
      })
      socket.once('error', () => resolve(false))
    })
    if (open) return
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${what} did not listen on ${port} within 10 s`)
}

/** nginx with one worker (like the single-threaded Node servers), sendfile on, access_log off, all state in a temp dir. */
async function startNginx(nginx: string, root: string, work: string): Promise<Server> {
  const port = await freePort()
  const prefix = path.join(work, 'nginx')
  fs.mkdirSync(path.join(prefix, 'logs'), { recursive: true })
  const conf = path.join(prefix, 'nginx.conf')
  const temp = (name: string) => `${name}_temp_path ${path.join(prefix, `${name}-temp`)};`
  fs.writeFileSync(
    conf,
    `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
daemon off;
pid ${path.join(prefix, 'nginx.pid')};
error_log ${path.join(prefix, 'logs', 'error.log')} warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  ${['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(temp).join('\n  ')}
  server {
    listen 127.0.0.1:${port};
    root ${root};
  }
}
`,
  )
  const child = spawn(nginx, ['-p', prefix, '-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] })
  servers.push(child)
  await waitForPort(port, child, 'nginx')
  return { key: 'nginx', label: 'nginx (sendfile on)', port }
}

/** Fetches a file from a server and checks every byte, so a fast wrong server cannot win. */
async function verify(server: Server, name: string, expected: Buffer): Promise<void> {
  const body = await within(
    new Promise<Buffer>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: `/${name}`, agent: false }, (response) => {
          const chunks: Buffer[] = []
          if (response.statusCode !== 200) reject(new Error(`${server.label} answered ${response.statusCode} for ${name}`))
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () => resolve(Buffer.concat(chunks)))
          response.on('error', reject)
        })
        .on('error', reject)
    }),
    10_000,
    `GET /${name} from ${server.label}`,
  )
  const hash = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex')
  if (hash(body) !== hash(expected)) throw new Error(`${server.label} sent wrong bytes for ${name}`)
}

interface Measurement {
  requestsPerS: number
  errors: string
}

/** The load generator: wrk when installed, else the C one; both keep-alive, both discard bodies. */
interface LoadGenerator {
  name: string
  run(port: number, name: string, seconds: number): Promise<Measurement>
}

function wrkLoad(wrk: string, cfg: Config): LoadGenerator {
  return {
    name: `wrk -t${cfg.threads} -c${cfg.connections}`,
    async run(port, name, seconds) {
      const child = new Child(wrk, ['-t', String(cfg.threads), '-c', String(cfg.connections), '-d', `${seconds}s`, `http://127.0.0.1:${port}/${name}`], 'wrk')
      return withChildren([child], async () => {
        const code = await child.exited((seconds + 30) * 1000)
        const output = child.stdout
        const rate = /Requests\/sec:\s*([\d.]+)/.exec(output)
        if (code !== 0 || !rate) throw new Error(`wrk failed (${code}):\n${output}${child.stderr}`)
        const errors = [/Socket errors:[^\n]*/.exec(output)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(output)?.[0]].filter(Boolean).join('; ')
        return { requestsPerS: Number(rate[1]), errors }
      })
    },
  }
}

function cLoad(binary: string, cfg: Config): LoadGenerator {
  return {
    name: `bench/c/http_load.c (one thread, ${cfg.connections} connections; wrk is not installed)`,
    async run(port, name, seconds) {
      const child = new Child(binary, [String(port), `/${name}`, String(cfg.connections), String(seconds), String(seconds + 30)], 'http_load')
      return withChildren([child], async () => {
        const result = await child.next((seconds + 30) * 1000)
        if ((await child.exited(10_000)) !== 0) throw new Error(`http_load failed: ${child.stderr.trim()}`)
        const errors = number(result, 'errors')
        return { requestsPerS: number(result, 'requests') / number(result, 'seconds'), errors: errors > 0 ? `${errors} failed connections` : '' }
      })
    },
  }
}

function format(value: number, digits = 0): string {
  return Number.isFinite(value) ? value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : 'n/a'
}

const SIZES = [
  { name: '1mib.bin', label: '1 MiB', bytes: MiB, goal: 1.6 },
  { name: '16kib.bin', label: '16 KiB', bytes: 16 * KiB, goal: 1.3 },
]

export async function runHttp(options: BenchOptions): Promise<ScenarioResult> {
  const cfg = config(options)
  const wrk = which('wrk')
  const load = wrk ? wrkLoad(wrk, cfg) : cLoad(compileC('http_load'), cfg)
  const nginx = options.nginx ? which('nginx') : undefined
  const failures: string[] = []

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-bench-'))
  const root = path.join(work, 'public')
  fs.mkdirSync(root)
  // The nginx worker must be able to read them whatever user it runs as.
  fs.chmodSync(work, 0o755)
  const files = SIZES.map((size) => ({ ...size, data: crypto.randomBytes(size.bytes) }))
  for (const { name, data } of files) fs.writeFileSync(path.join(root, name), data, { mode: 0o644 })

  // requests/s by "<size>/<server>", one entry per run.
  const perRun = new Map<string, number[]>()
  const errors = new Map<string, string>()
  let list: Server[] = []
  try {
    list = [
      await startNodeServer('static', 'createStaticHandler', 'static', root),
      await startNodeServer('serve-file', 'serveFile', 'serve-file', root),
      await startNodeServer('stream', 'createReadStream pipe', 'stream', root),
    ]
    if (nginx) list.push(await startNginx(nginx, root, work))
    for (const server of list) for (const { name, data } of files) await verify(server, name, data)

    for (let run = 0; run < options.runs; run++) {
      for (const size of files) {
        for (let i = 0; i < list.length; i++) {
          const server = list[(i + run) % list.length]
          log(`http ${size.label} run ${run + 1}/${options.runs}: ${server.key}`)
          await waitForQuiet(`http ${size.label} ${server.key}`, options)
          try {
            if (cfg.warmup) await load.run(server.port, size.name, cfg.warmup)
            const measured = await load.run(server.port, size.name, cfg.duration)
            const values = perRun.get(`${size.label}/${server.key}`) ?? []
            values[run] = measured.requestsPerS
            perRun.set(`${size.label}/${server.key}`, values)
            if (measured.errors) errors.set(`${size.label}/${server.key}`, measured.errors)
          } catch (error) {
            failures.push(`http ${size.label} ${server.key}: ${(error as Error).message}`)
          }
        }
      }
    }
  } finally {
    stopServers()
    fs.rmSync(work, { recursive: true, force: true })
  }

  const rates = (size: string, key: string) => (perRun.get(`${size}/${key}`) ?? []).filter((value) => Number.isFinite(value))
  const speedVs = (size: string, key: string, baseline: string) => {
    const ours = perRun.get(`${size}/${key}`) ?? []
    const theirs = perRun.get(`${size}/${baseline}`) ?? []
    return median(ours.flatMap((value, run) => (Number.isFinite(value) && Number.isFinite(theirs[run]) ? [value / theirs[run]] : [])))
  }
  const rows = files.flatMap((size) =>
    list.map((server) => {
      const requests = median(rates(size.label, server.key))
      const error = errors.get(`${size.label}/${server.key}`)
      return [
        size.label,
        server.label,
        format(requests),
        rates(size.label, server.key)
          .map((value) => format(value))
          .join(', '),
        format((requests * size.bytes) / 1e6, 1),
        `${ratio(speedVs(size.label, server.key, 'stream'))}${error ? ` (${error})` : ''}`,
      ]
    }),
  )
  const targets: Target[] = files.map((size) =>
    ratioTarget(
      `\`createStaticHandler\` requests/s, ${size.label} file, ${cfg.connections} keep-alive connections`,
      'node:http with `fs.stat` + `pipeline(fs.createReadStream(file), res)` (bench/http-server.ts `stream`)',
      speedVs(size.label, 'static', 'stream'),
      '≥',
      size.goal,
    ),
  )
  const headlines: Headline[] = files.map((size) => ({
    scenario: `HTTP ${size.label} file, ${cfg.connections} connections`,
    ours: `static handler ${format(median(rates(size.label, 'static')))} req/s`,
    baselines: `\`createReadStream\` ${format(median(rates(size.label, 'stream')))}${nginx ? `, nginx ${format(median(rates(size.label, 'nginx')))}` : ' (nginx not installed)'}`,
  }))

  const nginxVersion = nginx
    ? // nginx -v prints to stderr.
      spawnSync(nginx, ['-v'], { encoding: 'utf8' })
        .stderr.trim()
        .replace(/^nginx version: /, '')
    : options.nginx
      ? 'nginx not installed'
      : 'nginx left out (--no-nginx)'
  const markdown = [
    `${load.name}, ${cfg.duration} s per measurement${cfg.warmup ? ` after a ${cfg.warmup} s warm-up` : ''}, keep-alive, 127.0.0.1, each server in its own process; native binding: ${isNative}; ${nginxVersion}. Every server's answer for each file was fetched and compared with the file before timing. Medians of ${options.runs} run(s); the ratios are taken inside each run (server order rotated per run). Throughput counts body bytes (requests/s × file size).`,
    '',
    table(['file', 'server', 'requests/s', 'runs', 'throughput MB/s', 'speed vs createReadStream'], rows),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'http', title: '5. HTTP file serving', markdown, targets, headlines, failures }
}

if (require.main === module) runStandalone(runHttp)
