/**
 * HTTP file serving benchmark: createStaticHandler (zero-copy) against the usual
 * fs.createReadStream pipe, and nginx (sendfile on) when it is installed, for a 1 MiB and a
 * 16 KiB file, measured with wrk on the same machine in the same run.
 *
 *   node --import tsx bench/http.ts                 # 64 connections, 5 s per scenario
 *   node --import tsx bench/http.ts --smoke         # 1 s, 4 connections: checks the harness works
 *   node --import tsx bench/http.ts --duration 10 --connections 128 --threads 2 --no-nginx
 *
 * Environment variables BENCH_DURATION, BENCH_CONNECTIONS and BENCH_THREADS set the same.
 * Every server runs in its own process (bench/http-server.ts, or nginx with one worker), so
 * none shares an event loop with wrk or another server. Prints a markdown table.
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as http from 'node:http'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'

import { isNative } from '..'

const KiB = 1024
const MiB = 1024 * KiB

interface Config {
  duration: number
  connections: number
  threads: number
  warmup: number
  nginx: boolean
  smoke: boolean
}

function config(): Config {
  const args = process.argv.slice(2)
  const value = (name: string): string | undefined => {
    const at = args.findIndex((arg) => arg === `--${name}` || arg.startsWith(`--${name}=`))
    if (at === -1) return undefined
    return args[at].includes('=') ? args[at].split('=')[1] : args[at + 1]
  }
  const number = (name: string, env: string, fallback: number): number => {
    const raw = value(name) ?? process.env[env]
    const parsed = raw === undefined ? fallback : Number(raw)
    if (!Number.isInteger(parsed) || parsed < 1) throw new Error(`--${name} must be a positive integer, got ${raw}`)
    return parsed
  }
  const smoke = args.includes('--smoke')
  // On a small machine wrk gets fewer threads than cores, so the server has one to itself.
  const defaultThreads = Math.max(1, Math.min(4, os.availableParallelism() - 1))
  return {
    smoke,
    duration: number('duration', 'BENCH_DURATION', smoke ? 1 : 5),
    connections: number('connections', 'BENCH_CONNECTIONS', smoke ? 4 : 64),
    threads: number('threads', 'BENCH_THREADS', smoke ? 1 : defaultThreads),
    warmup: smoke ? 0 : 1,
    nginx: !args.includes('--no-nginx'),
  }
}

function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

const children: ChildProcess[] = []

function stopAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
}
process.on('exit', stopAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    stopAll()
    process.exit(130)
  })
}

/** Rejects when `promise` has not settled in `ms`: every wait here is bounded. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

interface Server {
  name: string
  port: number
}

/** Starts bench/http-server.ts in its own process; resolves when it prints its port. */
async function startNodeServer(name: string, kind: string, root: string): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'http-server.ts'), kind, root], { stdio: ['ignore', 'pipe', 'inherit'] })
  children.push(child)
  const port = await within(
    new Promise<number>((resolve, reject) => {
      let output = ''
      child.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString()
        const match = /listening (\d+)/.exec(output)
        if (match) resolve(Number(match[1]))
      })
      child.once('exit', (code) => reject(new Error(`${name} server exited with ${code}`)))
    }),
    30_000,
    `starting the ${name} server`,
  )
  return { name, port }
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
  children.push(child)
  await waitForPort(port, child, 'nginx')
  return { name: 'nginx (sendfile on)', port }
}

/** Fetches a file from a server and checks every byte, so a fast wrong server cannot win. */
async function verify(server: Server, name: string, expected: Buffer): Promise<void> {
  const body = await within(
    new Promise<Buffer>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: server.port, path: `/${name}`, agent: false }, (response) => {
          const chunks: Buffer[] = []
          if (response.statusCode !== 200) reject(new Error(`${server.name} answered ${response.statusCode} for ${name}`))
          response.on('data', (chunk: Buffer) => chunks.push(chunk))
          response.on('end', () => resolve(Buffer.concat(chunks)))
          response.on('error', reject)
        })
        .on('error', reject)
    }),
    10_000,
    `GET /${name} from ${server.name}`,
  )
  const hash = (data: Buffer) => crypto.createHash('sha256').update(data).digest('hex')
  if (hash(body) !== hash(expected)) throw new Error(`${server.name} sent wrong bytes for ${name}`)
}

interface Measurement {
  requests: number
  errors: string
}

function runWrk(wrk: string, port: number, name: string, seconds: number, cfg: Config): Promise<Measurement> {
  return within(
    new Promise<Measurement>((resolve, reject) => {
      const child = spawn(wrk, ['-t', String(cfg.threads), '-c', String(cfg.connections), '-d', `${seconds}s`, `http://127.0.0.1:${port}/${name}`], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      children.push(child)
      let output = ''
      child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
      child.once('exit', (code) => {
        const rate = /Requests\/sec:\s*([\d.]+)/.exec(output)
        if (code !== 0 || !rate) return reject(new Error(`wrk failed (${code}):\n${output}`))
        const errors = [/Socket errors:[^\n]*/.exec(output)?.[0], /Non-2xx or 3xx responses:[^\n]*/.exec(output)?.[0]].filter(Boolean).join('; ')
        resolve({ requests: Number(rate[1]), errors })
      })
    }),
    (seconds + 30) * 1000,
    'wrk',
  )
}

/**
 * Smoke runs on a machine without wrk: keep-alive requests from this process, enough to prove
 * the servers and the harness work (the figures mean nothing; real runs need wrk).
 */
async function runNodeLoad(port: number, name: string, seconds: number, cfg: Config): Promise<Measurement> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: cfg.connections })
  const deadline = Date.now() + seconds * 1000
  let requests = 0
  let failures = 0
  const client = async () => {
    while (Date.now() < deadline) {
      const ok = await new Promise<boolean>((resolve) => {
        http
          .get({ host: '127.0.0.1', port, path: `/${name}`, agent }, (res) => {
            res
              .on('data', () => {})
              .on('end', () => resolve(res.statusCode === 200))
              .on('error', () => resolve(false))
          })
          .on('error', () => resolve(false))
      })
      if (ok) requests++
      else failures++
    }
  }
  await Promise.all(Array.from({ length: cfg.connections }, client))
  agent.destroy()
  return { requests: requests / seconds, errors: failures > 0 ? `${failures} failed requests` : '' }
}

function format(value: number, digits = 0): string {
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

async function main(): Promise<void> {
  const cfg = config()
  const wrk = which('wrk')
  if (!wrk && !cfg.smoke) throw new Error('wrk is not installed (apt-get install -y wrk)')
  const load = (port: number, name: string, seconds: number) => (wrk ? runWrk(wrk, port, name, seconds, cfg) : runNodeLoad(port, name, seconds, cfg))
  const nginx = cfg.nginx ? which('nginx') : undefined

  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-bench-'))
  const root = path.join(work, 'public')
  fs.mkdirSync(root)
  // The nginx worker must be able to read them whatever user it runs as.
  fs.chmodSync(work, 0o755)
  const sizes = [
    { name: '1mib.bin', label: '1 MiB', data: crypto.randomBytes(MiB), target: 1.6 },
    { name: '16kib.bin', label: '16 KiB', data: crypto.randomBytes(16 * KiB), target: 1.3 },
  ]
  for (const { name, data } of sizes) fs.writeFileSync(path.join(root, name), data, { mode: 0o644 })

  try {
    const servers = [
      await startNodeServer('createStaticHandler', 'static', root),
      await startNodeServer('serveFile', 'serve-file', root),
      await startNodeServer('createReadStream pipe', 'stream', root),
    ]
    if (nginx) servers.push(await startNginx(nginx, root, work))
    for (const server of servers) for (const { name, data } of sizes) await verify(server, name, data)

    // nginx -v prints to stderr.
    const nginxVersion = nginx
      ? spawnSync(nginx, ['-v'], { encoding: 'utf8' })
          .stderr.trim()
          .replace(/^nginx version: /, '')
      : 'nginx not installed'
    console.log(`# HTTP file serving, ${new Date().toISOString()}`)
    console.log('')
    console.log(
      `node ${process.version}, Linux ${os.release()}, ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model.trim()}), native binding: ${isNative}, ${nginxVersion}`,
    )
    console.log(
      `${wrk ? 'wrk' : 'node keep-alive load (wrk not installed)'} -t${cfg.threads} -c${cfg.connections} -d${cfg.duration}s${cfg.warmup ? ` after a ${cfg.warmup} s warm-up` : ''}, keep-alive, 127.0.0.1, each server in its own process${cfg.smoke ? ' (SMOKE RUN: numbers mean nothing)' : ''}`,
    )
    console.log('')
    console.log('| file | server | requests/s | throughput MB/s | ratio vs createReadStream |')
    console.log('| --- | --- | ---: | ---: | ---: |')
    const verdicts: string[] = []
    for (const size of sizes) {
      const results = new Map<string, Measurement>()
      for (const server of servers) {
        if (cfg.warmup) await load(server.port, size.name, cfg.warmup)
        results.set(server.name, await load(server.port, size.name, cfg.duration))
      }
      const baseline = (results.get('createReadStream pipe') as Measurement).requests
      for (const server of servers) {
        const { requests, errors } = results.get(server.name) as Measurement
        const megabytes = (requests * size.data.length) / 1e6
        console.log(
          `| ${size.label} | ${server.name} | ${format(requests)} | ${format(megabytes, 1)} | ${(requests / baseline).toFixed(2)}×${errors ? ` (${errors})` : ''} |`,
        )
      }
      const ratio = (results.get('createStaticHandler') as Measurement).requests / baseline
      verdicts.push(
        `${size.label}: createStaticHandler ${ratio.toFixed(2)}× the createReadStream baseline (target ≥ ${size.target}×): ${ratio >= size.target ? 'met' : 'NOT met'}`,
      )
    }
    console.log('')
    console.log('Throughput counts body bytes (requests/s × file size); the ratio is the same for requests/s and MB/s.')
    if (cfg.smoke) console.log('- smoke run: targets not judged')
    else for (const verdict of verdicts) console.log(`- ${verdict}`)
  } finally {
    stopAll()
    fs.rmSync(work, { recursive: true, force: true })
  }
}

main().catch((error: unknown) => {
  console.error(error)
  stopAll()
  process.exitCode = 1
})
