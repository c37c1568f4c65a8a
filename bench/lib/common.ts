/**
 * What every benchmark scenario shares: options, fixtures, building the C helpers and the Node
 * workers, child processes with deadlines, statistics and markdown.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

export const BENCH_DIR = path.resolve(__dirname, '..')
export const REPO_DIR = path.resolve(BENCH_DIR, '..')
/** Compiled C programs and bundled workers; ignored by git (bench/.gitignore). */
export const BUILD_DIR = path.join(BENCH_DIR, 'build')

export const KiB = 1024
export const MiB = 1024 * KiB
export const GiB = 1024 * MiB

// ---------------------------------------------------------------------------------------------
// Options.

export interface BenchOptions {
  /** Tiny sizes and one run: proves the scripts still work, measures nothing. */
  smoke: boolean
  runs: number
  /** Scenario names to run; empty: all. */
  only: Set<string>
  /** Run strace/perf on the bulk senders after the timed runs (full mode only). */
  diagnose: boolean
  /** Include nginx in the HTTP scenario when it is installed (`--no-nginx`: never). */
  nginx: boolean
  /** Include Bun's server in the HTTP scenario when Bun is installed (`--no-bun`: never). */
  bun: boolean
}

/** `--smoke`, `--runs N` (or BENCH_RUNS), `--only a,b`, `--no-diagnose`, `--no-nginx`, `--no-bun`. */
export function parseOptions(argv: string[] = process.argv.slice(2)): BenchOptions {
  const smoke = argv.includes('--smoke') || process.env.BENCH_SMOKE === '1'
  const runsIndex = argv.indexOf('--runs')
  const runsText = runsIndex >= 0 ? argv[runsIndex + 1] : process.env.BENCH_RUNS
  const runs = runsText === undefined ? (smoke ? 1 : 3) : Number(runsText)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${runsText}`)
  const onlyIndex = argv.indexOf('--only')
  const only = new Set(onlyIndex >= 0 ? (argv[onlyIndex + 1] ?? '').split(',').filter(Boolean) : [])
  return { smoke, runs, only, diagnose: !smoke && !argv.includes('--no-diagnose'), nginx: !argv.includes('--no-nginx'), bun: !argv.includes('--no-bun') }
}

// ---------------------------------------------------------------------------------------------
// The machine, for the results header.

export interface Machine {
  cpu: string
  nproc: number
  kernel: string
  node: string
  tmpdir: string
  tmpfs: string
}

export function machine(): Machine {
  return {
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    nproc: os.availableParallelism(),
    kernel: os.release(),
    node: process.version,
    tmpdir: os.tmpdir(),
    tmpfs: filesystemOf(os.tmpdir()),
  }
}

/** The paths whose code the workers load; `git status --porcelain` over them says whether the tree was clean. */
export const MEASURED_PATHS = ['lib', 'crates', 'index.ts', 'binding.js']

/** Which code a run measured, so a results file can be traced to it and a changed build noticed. */
export interface Provenance {
  /** `git rev-parse --short HEAD`. */
  commit: string
  /** Files under {@link MEASURED_PATHS} that differ from the commit (empty: clean). */
  measuredChanges: string[]
  /** Files under bench/ that differ from the commit: the harness itself, reported apart. */
  benchChanges: string[]
  /** sha256 (first 12 hex digits) of each loaded artifact, with its build time. */
  artifacts: Array<{ file: string; sha256: string; builtAt: string }>
}

function git(...args: string[]): string {
  try {
    return execFileSync('git', args, { cwd: REPO_DIR, encoding: 'utf8', timeout: 5000 })
  } catch {
    return ''
  }
}

function porcelain(...paths: string[]): string[] {
  // Not trimmed: porcelain lines start with a meaningful space (" M file").
  return git('status', '--porcelain', '--', ...paths)
    .split('\n')
    .filter((line) => line.length > 3)
    .map((line) => line.slice(3))
}

function sha256Of(files: string[]): string {
  const hash = crypto.createHash('sha256')
  for (const file of files) {
    hash.update(path.relative(REPO_DIR, file))
    hash.update(fs.readFileSync(file))
  }
  return hash.digest('hex').slice(0, 12)
}

/** Every built .js under lib/ (lib/http, lib/cli included), in a stable order. */
function builtLibFiles(): string[] {
  const found: string[] = []
  const walk = (directory: string) => {
    for (const entry of fs.readdirSync(directory, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const full = path.join(directory, entry.name)
      if (entry.isDirectory()) walk(full)
      else if (entry.name.endsWith('.js')) found.push(full)
    }
  }
  if (fs.existsSync(path.join(REPO_DIR, 'lib'))) walk(path.join(REPO_DIR, 'lib'))
  return found
}

/**
 * Which code was measured: the commit, whether lib/, crates/, index.ts and binding.js differ
 * from it, and a hash of every artifact the workers load (the .node file, index.js, binding.js,
 * lib/**.js), since other people edit and rebuild while benchmarks run.
 */
export function codeUnderTest(): Provenance {
  const artifacts: Provenance['artifacts'] = []
  const nativeFiles = fs.readdirSync(REPO_DIR).filter((name) => /^sendfile\..+\.node$/.test(name))
  for (const name of [...nativeFiles, 'index.js', 'binding.js']) {
    const file = path.join(REPO_DIR, name)
    const stats = fs.statSync(file, { throwIfNoEntry: false })
    artifacts.push(stats ? { file: name, sha256: sha256Of([file]), builtAt: stats.mtime.toISOString() } : { file: name, sha256: 'missing', builtAt: '' })
  }
  const lib = builtLibFiles()
  const newest = lib.reduce((latest, file) => Math.max(latest, fs.statSync(file).mtimeMs), 0)
  artifacts.push({
    file: `lib/**/*.js (${lib.length} files)`,
    sha256: lib.length > 0 ? sha256Of(lib) : 'missing',
    builtAt: newest > 0 ? new Date(newest).toISOString() : '',
  })
  return {
    commit: git('rev-parse', '--short', 'HEAD').trim() || 'unknown',
    measuredChanges: porcelain(...MEASURED_PATHS),
    benchChanges: porcelain('bench'),
    artifacts,
  }
}

/** One line for a results header. */
export function describeProvenance(code: Provenance): string {
  const tree =
    code.measuredChanges.length === 0
      ? `the measured code is clean (\`git status --porcelain -- ${MEASURED_PATHS.join(' ')}\` is empty)`
      : `**the measured code has uncommitted changes** (${code.measuredChanges.join(', ')})`
  const bench = code.benchChanges.length === 0 ? 'bench/ is clean' : `bench/ has uncommitted changes (${code.benchChanges.join(', ')})`
  const artifacts = code.artifacts.map((artifact) => `${artifact.file} sha256 ${artifact.sha256}${artifact.builtAt ? ` (built ${artifact.builtAt})` : ''}`)
  return `commit ${code.commit}; ${tree}; ${bench}. Loaded artifacts: ${artifacts.join(', ')}`
}

/** Whether two snapshots name the same code (a rebuild in the middle of a run changes the hashes). */
export function sameCode(a: Provenance, b: Provenance): boolean {
  return JSON.stringify(a) === JSON.stringify(b)
}

/** The filesystem type behind a directory (from /proc/mounts): copy and page-cache behaviour depend on it. */
function filesystemOf(directory: string): string {
  try {
    const real = fs.realpathSync(directory)
    let best = { mount: '', type: 'unknown' }
    for (const line of fs.readFileSync('/proc/mounts', 'utf8').split('\n')) {
      const [, mount, type] = line.split(' ')
      if (mount === undefined || type === undefined) continue
      const inside = real === mount || real.startsWith(mount.endsWith('/') ? mount : `${mount}/`)
      if (inside && mount.length >= best.mount.length) best = { mount, type }
    }
    return best.type
  } catch {
    return 'unknown'
  }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

/**
 * A file of `size` random bytes in os.tmpdir(), created once and reused while its size is right.
 * Real data, never sparse: holes would let the kernel skip reading pages.
 */
export function ensureFixture(size: number): string {
  const file = path.join(os.tmpdir(), `zerocopy-sendfile-bench-${size}.bin`)
  if (fs.statSync(file, { throwIfNoEntry: false })?.size === size) return file
  // Written under another name and renamed, so an interrupted run never leaves a short file behind.
  const partial = `${file}.${process.pid}.partial`
  const block = Buffer.allocUnsafe(Math.min(size, 16 * MiB))
  const fd = fs.openSync(partial, 'w')
  try {
    for (let written = 0; written < size; ) {
      const length = Math.min(block.length, size - written)
      crypto.randomFillSync(block, 0, length)
      written += fs.writeSync(fd, block, 0, length)
    }
  } finally {
    fs.closeSync(fd)
  }
  fs.renameSync(partial, file)
  return file
}

/** Reads a file once so every sender starts with it in the page cache; nothing is ever dropped. */
export function warm(file: string): void {
  const buffer = Buffer.allocUnsafe(16 * MiB)
  const fd = fs.openSync(file, 'r')
  try {
    while (fs.readSync(fd, buffer, 0, buffer.length, null) > 0) {
      // Reading is the point.
    }
  } finally {
    fs.closeSync(fd)
  }
}

export function sha256File(file: string, ranges?: Array<[number, number]>): string {
  const hash = crypto.createHash('sha256')
  const fd = fs.openSync(file, 'r')
  try {
    const size = fs.fstatSync(fd).size
    const buffer = Buffer.allocUnsafe(4 * MiB)
    for (const [start, length] of ranges ?? [[0, size]]) {
      for (let done = 0; done < length; ) {
        const read = fs.readSync(fd, buffer, 0, Math.min(buffer.length, length - done), start + done)
        if (read === 0) break
        hash.update(buffer.subarray(0, read))
        done += read
      }
    }
  } finally {
    fs.closeSync(fd)
  }
  return hash.digest('hex')
}

// ---------------------------------------------------------------------------------------------
// Building the helpers.

function newerThan(target: string, sources: string[]): boolean {
  const built = fs.statSync(target, { throwIfNoEntry: false })
  return built !== undefined && sources.every((source) => fs.statSync(source).mtimeMs <= built.mtimeMs)
}

/** Compiles bench/c/<name>.c with `cc -O2` into bench/build/<name>, when the source changed. */
export function compileC(name: string): string {
  const source = path.join(BENCH_DIR, 'c', `${name}.c`)
  const header = path.join(BENCH_DIR, 'c', 'common.h')
  const binary = path.join(BUILD_DIR, name)
  if (newerThan(binary, [source, header])) return binary
  fs.mkdirSync(BUILD_DIR, { recursive: true })
  execFileSync('cc', ['-O2', '-Wall', '-Wextra', '-o', binary, source], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 60_000 })
  return binary
}

/**
 * Bundles bench/workers/<name>.ts into plain JavaScript in bench/build, so the child processes
 * run without tsx: its loader thread adds ~30 MiB of RSS and startup work that would be billed
 * to the server being measured. The package itself stays an external `require` of the built
 * index.js, exactly what users load.
 */
export async function buildWorker(name: string): Promise<string> {
  const source = path.join(BENCH_DIR, 'workers', `${name}.ts`)
  const output = path.join(BUILD_DIR, `${name}.js`)
  // esbuild comes with tsx, which every bench script already runs under.
  const esbuild = require('esbuild') as typeof import('esbuild')
  fs.mkdirSync(BUILD_DIR, { recursive: true })
  // The async API: esbuild refuses plugins in buildSync.
  await esbuild.build({
    entryPoints: [source],
    outfile: output,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    logLevel: 'error',
    plugins: [
      {
        name: 'package-is-external',
        setup(build) {
          // `../..` from bench/workers is the package root: keep it (and binding.js) external,
          // by absolute path, since the bundle lives in another directory.
          build.onResolve({ filter: /^\.\.\/\.\.(\/.*)?$/ }, (args) => ({ path: path.resolve(args.resolveDir, args.path), external: true }))
        },
      },
    ],
  })
  return output
}

/** The package as the workers load it: the built index.js must exist. */
export function ensurePackageBuilt(): void {
  for (const file of ['index.js', 'binding.js']) {
    if (!fs.existsSync(path.join(REPO_DIR, file))) throw new Error(`${file} is missing: run \`npm run build\` in ${REPO_DIR} first`)
  }
}

// ---------------------------------------------------------------------------------------------
// Child processes: every one has a deadline and is killed when the bench ends, however it ends.

const live = new Set<ChildProcess>()

function killAll(): void {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch {
      // Already gone.
    }
  }
  live.clear()
}

process.once('exit', killAll)
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll()
    process.exit(130)
  })
}

export type Json = Record<string, unknown>

/** A child whose stdout carries one JSON object per line. */
export class Child {
  readonly process: ChildProcess
  readonly label: string
  private readonly messages: Json[] = []
  private readonly waiters: Array<{ resolve: (message: Json) => void; reject: (error: Error) => void }> = []
  private stdoutRest = ''
  private stdoutText = ''
  private stderrText = ''
  private exitCode: number | null | undefined = undefined
  private readonly exitWaiters: Array<(code: number | null) => void> = []

  constructor(command: string, args: string[], label = path.basename(command)) {
    this.label = label
    this.process = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_DIR })
    live.add(this.process)
    this.process.stdout?.setEncoding('utf8').on('data', (text: string) => this.onStdout(text))
    this.process.stderr?.setEncoding('utf8').on('data', (text: string) => {
      // Bounded: a chatty child must not grow the bench's memory.
      if (this.stderrText.length < 64 * KiB) this.stderrText += text
    })
    this.process.on('error', (error) => this.onExit(null, error))
    // 'close', not 'exit': 'close' comes after the child's stdout has ended, so a last JSON line
    // written just before exiting is always read before the waiters are told it exited.
    this.process.on('close', (code, signal) => this.onExit(code ?? (signal ? 128 : null)))
    // Bounded all the same: a grandchild holding the pipe open must not hold the bench forever.
    this.process.on('exit', (code, signal) => setTimeout(() => this.onExit(code ?? (signal ? 128 : null)), 5000).unref())
  }

  get pid(): number {
    return this.process.pid ?? -1
  }

  /** Whether the child has exited (its stdout read to the end). */
  get hasExited(): boolean {
    return this.exitCode !== undefined
  }

  /**
   * Kills the child after `ms`, for children that run until told to stop (servers): their
   * deadline when the bench forgets them. Unref'd, so it never keeps the bench alive.
   */
  killAfter(ms: number): this {
    setTimeout(() => this.kill(), ms).unref()
    return this
  }

  private onStdout(text: string): void {
    // Bounded, like stderr: for tools that print a report rather than JSON lines (wrk).
    if (this.stdoutText.length < 64 * KiB) this.stdoutText += text
    const lines = (this.stdoutRest + text).split('\n')
    this.stdoutRest = lines.pop() ?? ''
    for (const line of lines) {
      if (!line.startsWith('{')) continue
      let message: Json
      try {
        message = JSON.parse(line) as Json
      } catch {
        continue
      }
      const waiter = this.waiters.shift()
      if (waiter) waiter.resolve(message)
      else this.messages.push(message)
    }
  }

  private onExit(code: number | null, error?: Error): void {
    if (this.exitCode !== undefined) return
    this.exitCode = code
    live.delete(this.process)
    const reason = new Error(
      `${this.label} exited (${error?.message ?? `code ${code}`}) before reporting${this.stderrText ? `: ${this.stderrText.trim()}` : ''}`,
    )
    for (const waiter of this.waiters.splice(0)) waiter.reject(reason)
    for (const waiter of this.exitWaiters.splice(0)) waiter(code)
  }

  /** The next JSON line, or a rejection when the child exits or the deadline passes first. */
  next(timeoutMs: number): Promise<Json> {
    const queued = this.messages.shift()
    if (queued) return Promise.resolve(queued)
    if (this.exitCode !== undefined) return Promise.reject(new Error(`${this.label} already exited: ${this.stderrText.trim()}`))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const index = this.waiters.indexOf(entry)
        if (index >= 0) this.waiters.splice(index, 1)
        this.kill()
        reject(new Error(`${this.label} reported nothing within ${timeoutMs} ms${this.stderrText ? `: ${this.stderrText.trim()}` : ''}`))
      }, timeoutMs)
      const entry = {
        resolve: (message: Json) => {
          clearTimeout(timer)
          resolve(message)
        },
        reject: (error: Error) => {
          clearTimeout(timer)
          reject(error)
        },
      }
      this.waiters.push(entry)
    })
  }

  /** Waits for the exit code; kills the child if it is still running after `timeoutMs`. */
  exited(timeoutMs: number): Promise<number | null> {
    if (this.exitCode !== undefined) return Promise.resolve(this.exitCode)
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.kill(), timeoutMs)
      this.exitWaiters.push((code) => {
        clearTimeout(timer)
        resolve(code)
      })
    })
  }

  get stderr(): string {
    return this.stderrText
  }

  /** Everything the child printed on stdout (the first 64 KiB). */
  get stdout(): string {
    return this.stdoutText
  }

  kill(): void {
    if (this.exitCode === undefined) this.process.kill('SIGKILL')
  }
}

/** Runs `body`; whatever happens, the children it started are gone afterwards. */
export async function withChildren<T>(children: Child[], body: () => Promise<T>): Promise<T> {
  try {
    return await body()
  } finally {
    for (const child of children) child.kill()
    await Promise.all(children.map((child) => child.exited(5000)))
  }
}

export function number(message: Json, key: string): number {
  const value = message[key]
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new Error(`expected a number in "${key}", got ${JSON.stringify(message)}`)
  return value
}

// ---------------------------------------------------------------------------------------------
// Other load on the machine: the bench shares its cores with whatever else runs, so before each
// measurement it waits (bounded) for the machine to be quiet and records how busy it was.

function cpuTicks(): { busy: number; total: number } {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const total = fields.reduce((sum, value) => sum + value, 0)
  // idle + iowait
  return { busy: total - fields[3] - fields[4], total }
}

/** The fraction (0-1) of all CPUs busy over `ms`, whoever used them. */
export async function systemBusy(ms = 500): Promise<number> {
  const before = cpuTicks()
  await new Promise((resolve) => setTimeout(resolve, ms))
  const after = cpuTicks()
  return after.total === before.total ? 0 : (after.busy - before.busy) / (after.total - before.total)
}

export interface LoadCheck {
  label: string
  busy: number
  waitedS: number
}

/** Every check made in this process, for the results header. */
export const loadChecks: LoadCheck[] = []

/** Above this, the machine is too busy with other work for a measurement to mean much. */
export const QUIET = 0.1

let waitedInAllS = 0

/**
 * Waits until no more than {@link QUIET} of the CPUs are busy (nothing of the bench's runs
 * between measurements), for at most BENCH_QUIET_WAIT seconds (default 30) per measurement and
 * BENCH_QUIET_BUDGET seconds (default 150) per process, so a machine that never calms down
 * cannot stretch the run without bound (the whole of `npm run bench` must fit in 15 minutes); then records the load and measures either way. Smoke
 * runs only record it.
 */
export async function waitForQuiet(label: string, options: BenchOptions): Promise<void> {
  const budgetLeftS = Math.max(0, Number(process.env.BENCH_QUIET_BUDGET ?? 150) - waitedInAllS)
  const limitS = Math.min(Number(process.env.BENCH_QUIET_WAIT ?? 30), budgetLeftS)
  const started = Date.now()
  for (;;) {
    const busy = await systemBusy(options.smoke ? 100 : 500)
    const waitedS = (Date.now() - started) / 1000
    if (busy <= QUIET || options.smoke || waitedS >= limitS) {
      if (busy > QUIET && !options.smoke) log(`${label}: the machine is still ${fixed(busy * 100, 0)}% busy after ${fixed(waitedS, 0)} s; measuring anyway`)
      loadChecks.push({ label, busy, waitedS })
      waitedInAllS += waitedS
      return
    }
    log(`${label}: waiting for other load to end (${fixed(busy * 100, 0)}% busy)`)
    await new Promise((resolve) => setTimeout(resolve, 2000))
  }
}

// ---------------------------------------------------------------------------------------------
// strace -c summaries, for the diagnostics.

export interface StraceRow {
  syscall: string
  calls: number
  errors: number
  seconds: number
}

/** Parses an `strace -c` summary file, rows sorted by calls. */
export function parseStraceSummary(file: string): StraceRow[] {
  const rows: StraceRow[] = []
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/)
    // "% time  seconds  usecs/call  calls  [errors]  syscall"; the total line has no usecs/call.
    if (fields.length < 5 || !/^\d/.test(fields[0])) continue
    const hasErrors = fields.length >= 6
    rows.push({ seconds: Number(fields[1]), calls: Number(fields[3]), errors: hasErrors ? Number(fields[4]) : 0, syscall: fields[hasErrors ? 5 : 4] })
  }
  return rows.sort((a, b) => b.calls - a.calls)
}

export function straceTable(rows: StraceRow[], limit = 8): string {
  return table(
    ['syscall', 'calls', 'errors', 'seconds'],
    rows.slice(0, limit).map((row) => [row.syscall, String(row.calls), String(row.errors), fixed(row.seconds, 6)]),
  )
}

// ---------------------------------------------------------------------------------------------
// Statistics and formatting.

/** The median of the values that were measured (NaN, "not measured", is left out). */
export function median(values: number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  const middle = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

/** The p-th percentile (0-100) by nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]
}

/** A size as people say it: 4 KiB, 8 MiB, 1 GiB. */
export function sizeLabel(bytes: number): string {
  const [name, unit] = bytes >= GiB ? ['GiB', GiB] : bytes >= MiB ? ['MiB', MiB] : ['KiB', KiB]
  return `${Number((bytes / unit).toFixed(2))} ${name}`
}

export function fixed(value: number, digits = 2): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

export function ratio(value: number, digits = 2): string {
  return Number.isFinite(value) ? `${value.toFixed(digits)}×` : 'n/a'
}

export function table(headers: string[], rows: string[][]): string {
  const line = (cells: string[]) => `| ${cells.join(' | ')} |`
  return [line(headers), line(headers.map(() => '---')), ...rows.map(line)].join('\n')
}

/** A goal and whether this run reached it; `margin` says by how much, either way. */
export interface Target {
  /** What is measured, e.g. `sendFile wall time, 1000 × 8 MiB`. */
  what: string
  /** What it is compared with, named plainly: which C loop, which Node pattern, or "none (absolute)". */
  baseline: string
  goal: string
  measured: string
  met: boolean
  margin: string
}

/** A goal on `ours / baseline` from the same run: at least `limit` (speed) or at most (time). */
export function ratioTarget(what: string, baseline: string, value: number, op: '≥' | '≤', limit: number, detail = ''): Target {
  const met = op === '≥' ? value >= limit : value <= limit
  const off = Math.abs(value / limit - 1) * 100
  const side = op === '≥' ? (met ? 'above the goal' : 'short of the goal') : met ? 'under the limit' : 'over the limit'
  return {
    what,
    baseline,
    goal: `${op} ${Number.isInteger(limit) ? limit.toFixed(1) : limit}×`,
    measured: `${ratio(value, 3)}${detail ? ` (${detail})` : ''}`,
    met,
    margin: Number.isFinite(value) ? `${fixed(off, 1)}% ${side}` : '',
  }
}

/** A goal on an absolute amount (ms, MiB, ns): below `limit`. */
export function amountTarget(what: string, baseline: string, value: number, op: '<' | '≤', limit: number, unit: string, digits = 2, detail = ''): Target {
  const met = op === '<' ? value < limit : value <= limit
  return {
    what,
    baseline,
    goal: `${op} ${limit} ${unit}`,
    measured: `${fixed(value, digits)} ${unit}${detail ? ` (${detail})` : ''}`,
    met,
    margin: Number.isFinite(value) ? `${fixed(Math.abs(limit - value), digits)} ${unit} ${met ? 'to spare' : 'over'}` : '',
  }
}

export function notMeasured(target: Target): boolean {
  return target.measured.startsWith('n/a')
}

export function metCell(target: Target): string {
  return notMeasured(target) ? 'n/a (not measured)' : target.met ? 'yes' : '**no**'
}

export function targetTable(targets: Target[]): string {
  return table(
    ['Target', 'Baseline (same run)', 'Goal', 'Measured', 'Met', 'Margin'],
    targets.map((target) => [target.what, target.baseline, target.goal, target.measured, metCell(target), notMeasured(target) ? '' : target.margin]),
  )
}

/** One row of the README's performance table: a scenario's headline figure beside its baselines. */
export interface Headline {
  scenario: string
  ours: string
  baselines: string
}

export interface ScenarioResult {
  name: string
  title: string
  /** Tables and notes, in markdown. */
  markdown: string
  targets: Target[]
  /** Rows for the README's performance table. */
  headlines: Headline[]
  /** Wrong byte counts, hashes or crashed children: the smoke test fails on any. */
  failures: string[]
}

/** A temporary path for Unix sockets and copies, unique to this process. */
export function tempPath(name: string): string {
  return path.join(os.tmpdir(), `zerocopy-sendfile-bench-${process.pid}-${name}`)
}

export function log(message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

/** Runs one scenario when its script is run directly: prints its section, exits non-zero on failures. */
export function runStandalone(run: (options: BenchOptions) => Promise<ScenarioResult>): void {
  run(parseOptions()).then(
    (result) => {
      console.log(`## ${result.title}\n\n${result.markdown}`)
      for (const failure of result.failures) console.error(`FAILED: ${failure}`)
      process.exitCode = result.failures.length > 0 ? 1 : 0
    },
    (error: unknown) => {
      console.error(error)
      process.exitCode = 1
    },
  )
}
