/**
 * Scenario 4, file copy: one 1 GiB file copied within os.tmpdir() by copyFile, copyFileSync,
 * fs.promises.copyFile (the baseline), fs.copyFileSync and cp(1), each copy in a fresh process
 * (in one long-lived process the same call varied 3× from run to run). The destination is
 * deleted before every copy, so each one allocates its blocks afresh.
 *
 *   node --import tsx bench/copy.ts [--smoke] [--runs N]
 */
import { spawnSync } from 'node:child_process'
import * as fs from 'node:fs'
import {
  buildWorker,
  Child,
  ensureFixture,
  ensurePackageBuilt,
  fixed,
  GiB,
  KiB,
  log,
  machine,
  median,
  MiB,
  number,
  parseStraceSummary,
  ratio,
  sha256File,
  straceTable,
  table,
  targetTable,
  tempPath,
  waitForQuiet,
  warm,
  withChildren,
  runStandalone,
  type BenchOptions,
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Method {
  key: string
  label: string
}

const METHODS: Method[] = [
  { key: 'copyFile', label: '`await copyFile(src, dst)`' },
  { key: 'copyFileSync', label: '`copyFileSync(src, dst)`' },
  { key: 'fs.promises.copyFile', label: '`await fs.promises.copyFile(src, dst)` (baseline)' },
  { key: 'fs.copyFileSync', label: '`fs.copyFileSync(src, dst)`' },
  { key: 'cp', label: '`cp src dst` (coreutils; its time includes exec)' },
]

/** One copy in a fresh process; its duration in seconds. */
async function timedCopy(worker: string, method: Method, source: string, destination: string, deadline: number, repeat = 1): Promise<number> {
  if (method.key === 'cp') {
    const started = process.hrtime.bigint()
    const child = new Child('cp', [source, destination], 'cp')
    const code = await withChildren([child], () => child.exited(deadline * 1000))
    if (code !== 0) throw new Error(`cp exited with ${code}: ${child.stderr.trim()}`)
    return Number(process.hrtime.bigint() - started) / 1e9
  }
  const child = new Child(process.execPath, [worker, method.key, source, destination, String(deadline), String(repeat)], `copy ${method.key}`)
  return withChildren([child], async () => {
    const seconds = number(await child.next(deadline * 1000), 'seconds')
    if ((await child.exited(10_000)) !== 0) throw new Error(`exit code: ${child.stderr.trim()}`)
    return seconds
  })
}

/** Start, middle and end of the file: a shifted, truncated or zero-filled copy changes one of them. */
function samples(size: number): Array<[number, number]> {
  const length = Math.min(MiB, size)
  return [
    [0, length],
    [Math.floor((size - length) / 2), length],
    [size - length, length],
  ]
}

/**
 * Waits, outside the timing, until no writeback is in flight. fs.copyFile truncates its
 * destination (libuv's ftruncate(fd, 0)), which makes ext4 start writing the whole file back
 * when it is closed (auto_da_alloc); without this, that disk I/O would still be running during
 * the next method's copy and slow it down, whichever it is.
 */
function settleWriteback(): void {
  spawnSync('sync', [], { stdio: 'ignore', timeout: 60_000 })
}

/**
 * Touches `bytes` of memory in a short-lived child just before a copy, outside the timing.
 * On a VM with virtio-balloon free page reporting (this one), pages the guest freed are handed
 * back to the host after ~2 s, and the next writer to get them pays a host fault per page:
 * the copy that happened to allocate such pages for its 1 GiB of page cache measured 0.4 GB/s
 * instead of 3. Faulting them in first gives every method the same, backed, free memory.
 */
function prefault(bytes: number): void {
  spawnSync(process.execPath, ['-e', `Buffer.allocUnsafeSlow(${bytes}).fill(1)`], { stdio: 'ignore', timeout: 60_000 })
}

/**
 * `strace -c -w -f` (wall time per syscall) of one extra copy: where the time goes, in
 * particular the close() at which ext4 starts writing back a file that was truncated.
 */
async function strace(worker: string, method: Method, source: string, destination: string, deadline: number): Promise<string> {
  const output = tempPath(`strace-copy-${method.key}.txt`)
  const child = new Child(
    'strace',
    [
      '-c',
      '-w',
      '-f',
      '-o',
      output,
      '-e',
      'trace=copy_file_range,sendfile,ftruncate,close,openat,fchmod',
      process.execPath,
      worker,
      method.key,
      source,
      destination,
      String(deadline),
    ],
    `strace ${method.key}`,
  )
  try {
    return await withChildren([child], async () => {
      await child.next(deadline * 1000)
      if ((await child.exited(10_000)) !== 0) return `${method.label}: strace failed: ${child.stderr.trim()}`
      return `${method.label}:\n\n${straceTable(parseStraceSummary(output), 6)}`
    })
  } catch (error) {
    return `${method.label}: strace failed: ${(error as Error).message}`
  } finally {
    fs.rmSync(output, { force: true })
  }
}

export async function runCopy(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const size = options.smoke ? 8 * MiB : GiB
  const deadline = options.smoke ? 20 : 120
  const worker = await buildWorker('copy-worker')
  const source = ensureFixture(size)
  warm(source)
  // Smoke mode hashes whole files; full mode hashes samples, since hashing 1 GiB per copy
  // would cost more than the copies.
  const ranges = options.smoke ? undefined : samples(size)
  const expectedHash = sha256File(source, ranges)
  const destination = tempPath('copy.bin')
  const failures: string[] = []
  const seconds = new Map<string, number[]>(METHODS.map((method) => [method.key, []]))
  const perRun: Array<Map<string, number>> = []
  let diagnostics = ''
  const small = new Map<string, number[]>(METHODS.map((method) => [method.key, []]))

  try {
    for (let run = 0; run < options.runs; run++) {
      const thisRun = new Map<string, number>()
      for (let i = 0; i < METHODS.length; i++) {
        const method = METHODS[(i + run) % METHODS.length]
        log(`copy run ${run + 1}/${options.runs}: ${method.key}`)
        fs.rmSync(destination, { force: true })
        settleWriteback()
        await waitForQuiet(`copy ${method.key}`, options)
        prefault(Math.ceil(size * 1.25))
        try {
          const elapsed = await timedCopy(worker, method, source, destination, deadline)
          const copied = fs.statSync(destination).size
          const hash = sha256File(destination, ranges)
          if (copied !== size || hash !== expectedHash) {
            failures.push(`copy ${method.key}: ${copied} of ${size} bytes, sha256 ${hash === expectedHash ? 'matches' : 'differs'}`)
            continue
          }
          seconds.get(method.key)?.push(elapsed)
          thisRun.set(method.key, elapsed)
        } catch (error) {
          failures.push(`copy ${method.key}: ${(error as Error).message}`)
        }
      }
      perRun.push(thisRun)
    }
    // Small files: what a copy costs beyond moving bytes (opens, stats, thread handoffs).
    const smallSource = ensureFixture(64 * KiB)
    const smallRepeat = options.smoke ? 20 : 500
    for (let run = 0; run < options.runs; run++) {
      for (const method of METHODS.filter((candidate) => candidate.key !== 'cp')) {
        log(`copy 64 KiB run ${run + 1}/${options.runs}: ${method.key}`)
        await waitForQuiet(`copy 64 KiB ${method.key}`, options)
        try {
          const seconds = await timedCopy(worker, method, smallSource, destination, deadline, smallRepeat)
          if (fs.statSync(destination).size !== 64 * KiB || sha256File(destination) !== sha256File(smallSource))
            throw new Error('the copy differs from its source')
          small.get(method.key)?.push(seconds)
        } catch (error) {
          failures.push(`copy 64 KiB ${method.key}: ${(error as Error).message}`)
        }
      }
    }

    if (options.diagnose) {
      const traced: string[] = []
      for (const method of METHODS.filter((candidate) => candidate.key !== 'cp')) {
        log(`copy strace -c -w -f: ${method.key}`)
        fs.rmSync(destination, { force: true })
        settleWriteback()
        await waitForQuiet(`copy strace ${method.key}`, options)
        prefault(Math.ceil(size * 1.25))
        traced.push(await strace(worker, method, source, destination, deadline))
      }
      diagnostics = `\n\n\`strace -c -w -f\` (wall-clock seconds per syscall) of one extra copy each, file syscalls only:\n\n${traced.join('\n\n')}`
    }
  } finally {
    fs.rmSync(destination, { force: true })
  }

  const gbps = (key: string) => (seconds.get(key) ?? []).map((elapsed) => size / 1e9 / elapsed)
  // Speed ratio inside one run (baseline time / our time), then the median.
  const vsBaseline = (key: string) =>
    median(
      perRun.flatMap((run) =>
        run.has(key) && run.has('fs.promises.copyFile') ? [(run.get('fs.promises.copyFile') as number) / (run.get(key) as number)] : [],
      ),
    )
  const rows = METHODS.map((method) => [
    method.label,
    fixed(median(gbps(method.key))),
    gbps(method.key)
      .map((value) => fixed(value))
      .join(', '),
    ratio(vsBaseline(method.key)),
  ])

  const targets: Target[] = ['copyFile', 'copyFileSync'].map((key) => {
    const value = vsBaseline(key)
    return {
      what: `${key} vs fs.promises.copyFile`,
      goal: '≥ 1.0×',
      measured: ratio(value, 3),
      met: value >= 1,
      margin: `${fixed(Math.abs(value - 1) * 100, 1)}% ${value >= 1 ? 'faster' : 'slower'}`,
    }
  })

  const { tmpdir, tmpfs } = machine()
  const markdown = [
    `${fixed(size / MiB, 0)} MiB file (page cache warm) copied to a new file in the same directory, ${tmpdir} (${tmpfs}); the destination is deleted and \`sync\` run before each copy, so no writeback is in flight when a copy starts, and 1.25× the file size of memory is faulted in by a throwaway process first (this VM hands freed pages back to its host, which made fresh page cache cost 3-8× more for whichever copy drew those pages); dirty pages a copy leaves behind are not waited for, but a close that starts writeback (ext4's auto_da_alloc after fs.copyFile's ftruncate) is inside that method's timing. Each copy runs in a fresh process; GB/s = 10^9 bytes / wall time of the call inside it. Verified: size and sha256 of ${options.smoke ? 'the whole file' : 'three 1 MiB samples (start, middle, end)'}. Medians of ${options.runs} run(s); ratios are taken inside each run, then the median.`,
    '',
    table(['Method', 'GB/s', 'runs', 'speed vs fs.promises.copyFile'], rows),
    '',
    `64 KiB files (not a target; what each call costs beyond moving bytes): median µs per copy of ${options.smoke ? 20 : 500} copies after as many untimed ones, one process per method and run, destination deleted before each; median of ${options.runs} run(s).`,
    '',
    table(
      ['Method', 'µs per 64 KiB copy', 'runs', 'time vs fs.promises.copyFile (lower is better)'],
      METHODS.filter((method) => method.key !== 'cp').map((method) => {
        const values = small.get(method.key) ?? []
        return [
          method.label,
          fixed(median(values) * 1e6, 0),
          values.map((value) => fixed(value * 1e6, 0)).join(', '),
          ratio(median(values) / median(small.get('fs.promises.copyFile') ?? [])),
        ]
      }),
    ),
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'copy', title: '4. File copy', markdown: markdown + diagnostics, targets, failures }
}

if (require.main === module) runStandalone(runCopy)
