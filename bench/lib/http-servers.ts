/**
 * The HTTP scenario's servers, each its own process started as a {@link Child} with a deadline:
 * the Node servers of bench/http-server.ts, Bun's (bench/http-bun-server.ts) and nginx. Bun and
 * nginx run under bench/c/die_with_parent.c, so they die with the bench even when it is killed
 * with SIGKILL; the Node servers also end by themselves at their deadline. Also here: the
 * untimed check of every server's bytes, and a process's CPU time from /proc.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'

import { BENCH_DIR, Child, compileC, number, REPO_DIR } from './common'

/** The kinds of bench/http-server.ts. */
export type NodeKind = 'static' | 'serve-file' | 'buffer' | 'stream' | 'send'
export type ServerKey = NodeKind | 'bun' | 'nginx'

export interface HttpServer {
  key: ServerKey
  /** What it is, named plainly: the call, or the product and how it was set up. */
  label: string
  port: number
  /** The server process itself (not a wrapper): whose /proc/<pid>/stat counts its CPU. */
  pid: number
  child: Child
  /** Bytes of the response header (status line to the blank line) per file name, from {@link verify}. */
  headerBytes: Map<string, number>
}

export const NODE_LABELS: Record<NodeKind, string> = {
  static: '`createStaticHandler(root)`',
  'serve-file': '`serveFile(req, res, path)`',
  buffer: 'in-memory ceiling: `res.end(buffer)` of the file read at startup',
  stream: '`pipeline(fs.createReadStream(path), res)` after `fs.stat`',
  send: '`send(req, pathname, { root }).pipe(res)` (send 1.x)',
}

/** Rejects when `promise` has not settled in `ms`: every wait here is bounded. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

export function which(command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

/** A server that prints `{"port","pid"}` when it listens (the Node and Bun servers). */
async function listening(key: ServerKey, label: string, child: Child): Promise<HttpServer> {
  const ready = await child.next(30_000)
  return { key, label, port: number(ready, 'port'), pid: number(ready, 'pid'), child, headerBytes: new Map() }
}

/** bench/http-server.ts `kind` over `root`, ending itself after `deadlineS`. */
export async function startNodeServer(kind: NodeKind, root: string, deadlineS: number): Promise<HttpServer> {
  const child = new Child(process.execPath, ['--import', 'tsx', path.join(BENCH_DIR, 'http-server.ts'), kind, root, String(deadlineS)], `server ${kind}`)
  return listening(kind, NODE_LABELS[kind], child.killAfter((deadlineS + 5) * 1000))
}

/** Runs `command` under die_with_parent, killed after `deadlineS` by the bench. */
function orphanProof(command: string, args: string[], label: string, deadlineS: number): Child {
  return new Child(compileC('die_with_parent'), [String(process.pid), command, ...args], label).killAfter(deadlineS * 1000)
}

/**
 * Bun to run bench/http-bun-server.ts with: node_modules/.bin/bun (the devDependency), else one
 * on the PATH; with its version, or why there is none. A bun that is present but does not run
 * (an install whose download failed) counts as absent.
 */
export function findBun(): { bun?: string; version?: string; note: string } {
  const local = path.join(REPO_DIR, 'node_modules', '.bin', 'bun')
  const bun = fs.existsSync(local) ? local : which('bun')
  if (!bun) return { note: 'Bun left out: not installed (no node_modules/.bin/bun, none on the PATH)' }
  const probe = spawnSync(bun, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  if (probe.status !== 0)
    return { note: `Bun left out: ${path.relative(REPO_DIR, bun) || bun} did not run (${(probe.stderr || probe.error?.message || '').trim()})` }
  return { bun, version: probe.stdout.trim(), note: `Bun ${probe.stdout.trim()}` }
}

export async function startBun(bun: string, version: string, root: string, deadlineS: number): Promise<HttpServer> {
  const child = orphanProof(bun, [path.join(BENCH_DIR, 'http-bun-server.ts'), root, String(deadlineS)], 'server bun', deadlineS + 5)
  return listening('bun', `Bun ${version}: \`Bun.serve\` with \`new Response(Bun.file(path))\``, child)
}

export function nginxVersion(nginx: string): string {
  // nginx -v prints to stderr.
  return spawnSync(nginx, ['-v'], { encoding: 'utf8', timeout: 10_000 })
    .stderr.trim()
    .replace(/^nginx version: nginx\//, '')
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

async function waitForPort(port: number, child: Child, what: string): Promise<void> {
  for (let attempt = 0; attempt < 100; attempt++) {
    if (child.hasExited) throw new Error(`${what} exited: ${child.stderr.trim()}`)
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

/**
 * nginx as one process (`master_process off`: the process that serves is the one whose CPU is
 * read, like the single-threaded Node servers), sendfile on, access_log off, everything it
 * writes (pid, error log, temp paths) in `work`, as whatever user runs the bench. Otherwise
 * nginx's defaults: no open_file_cache, so it opens and stats the file per request as the Node
 * servers do.
 */
export async function startNginx(nginx: string, version: string, root: string, work: string, deadlineS: number): Promise<HttpServer> {
  const port = await freePort()
  const prefix = path.join(work, 'nginx')
  fs.mkdirSync(prefix, { recursive: true })
  const conf = path.join(prefix, 'nginx.conf')
  const errorLog = path.join(prefix, 'error.log')
  const temp = (name: string) => `${name}_temp_path ${path.join(prefix, `${name}-temp`)};`
  fs.writeFileSync(
    conf,
    `daemon off;
master_process off;
worker_processes 1;
pid ${path.join(prefix, 'nginx.pid')};
error_log ${errorLog} warn;
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
  // -e (nginx ≥ 1.19.5): the log nginx writes before it has read the config, else a path under
  // /var/log that only root may open.
  const [major, minor, patch] = version.split('.').map(Number)
  const early = major > 1 || minor > 19 || (minor === 19 && patch >= 5) ? ['-e', errorLog] : []
  const child = orphanProof(nginx, ['-p', prefix, '-c', conf, ...early], 'nginx', deadlineS)
  await waitForPort(port, child, 'nginx')
  return { key: 'nginx', label: `nginx ${version}, one process, \`sendfile on\``, port, pid: child.pid, child, headerBytes: new Map() }
}

/**
 * Untimed: asks `server` for every file on one keep-alive connection, as the load does, and
 * compares each body's sha256 with the file's, so a fast wrong server cannot win. Records each
 * response's header size, which the load needs to count body bytes.
 */
export async function verify(server: HttpServer, files: Array<{ name: string; bytes: number; sha256: string }>): Promise<void> {
  const socket = net.connect(server.port, '127.0.0.1')
  const reader = socket[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  let pending: Buffer = Buffer.alloc(0)
  const more = async () => {
    const { value, done } = await reader.next()
    if (done) throw new Error(`${server.label} closed the connection`)
    pending = pending.length > 0 ? Buffer.concat([pending, value]) : value
  }
  try {
    for (const file of files) {
      await within(
        (async () => {
          socket.write(`GET /${file.name} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\n\r\n`)
          let end = pending.indexOf('\r\n\r\n')
          while (end < 0) {
            await more()
            end = pending.indexOf('\r\n\r\n')
          }
          const head = pending.subarray(0, end + 4).toString('latin1')
          pending = pending.subarray(end + 4)
          if (!head.startsWith('HTTP/1.1 200 ')) throw new Error(`${server.label} answered ${head.split('\r\n')[0]} for ${file.name}`)
          const length = /\r\ncontent-length:\s*(\d+)/i.exec(head)
          if (!length || Number(length[1]) !== file.bytes) throw new Error(`${server.label} sent no Content-Length of ${file.bytes} for ${file.name}`)
          const hash = crypto.createHash('sha256')
          for (let left = file.bytes; left > 0; ) {
            if (pending.length === 0) await more()
            const take = pending.subarray(0, Math.min(left, pending.length))
            hash.update(take)
            left -= take.length
            pending = pending.subarray(take.length)
          }
          if (hash.digest('hex') !== file.sha256) throw new Error(`${server.label} sent wrong bytes for ${file.name}`)
          server.headerBytes.set(file.name, end + 4)
        })(),
        30_000,
        `GET /${file.name} from ${server.label}`,
      )
    }
  } finally {
    socket.destroy()
  }
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
})()

/** CPU time (user + system, all threads) a process has used so far, in seconds, from /proc/<pid>/stat. */
export function processCpuS(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // utime and stime are fields 14 and 15; counted after the command name, which may hold spaces.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  } catch {
    return Number.NaN
  }
}
