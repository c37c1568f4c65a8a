/**
 * Scenario 4, file copy, path to path within os.tmpdir(): copyFile and copyFileSync against
 * fs.promises.copyFile and fs.copyFileSync (and cp(1) for reference) at 4 KiB, 64 KiB, 1 MiB and
 * 1 GiB; the 1 GiB copy also with an fsync of the destination inside the timing, since ext4's
 * writeback at close otherwise decides it. Every method and run is a fresh process (in one
 * long-lived process the same call varied 3× from run to run); the destination is deleted before
 * every copy, so each one allocates its blocks afresh.
 *
 *   node --import tsx bench/copy.ts [--smoke] [--runs N] [--no-diagnose]
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
  ratioTarget,
  sha256File,
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
  type ScenarioResult,
  type Target,
} from './lib/common'

interface Method {
  key: string
  label: string
  /** The Node call it is held against: each of ours has the Node twin with the same shape. */
  baseline?: string
}

const METHODS: Method[] = [
  { key: 'copyFile', label: '`await copyFile(src, dst)`', baseline: 'fs.promises.copyFile' },
  { key: 'copyFileSync', label: '`copyFileSync(src, dst)`', baseline: 'fs.copyFileSync' },
  { key: 'fs.promises.copyFile', label: '`await fs.promises.copyFile(src, dst)`' },
  { key: 'fs.copyFileSync', label: '`fs.copyFileSync(src, dst)`' },
  { key: 'cp', label: '`cp src dst` (coreutils; its time includes exec)' },
]
const NODE_METHODS = METHODS.filter((method) => method.key !== 'cp')
const OURS = METHODS.filter((method) => method.baseline !== undefined)

/** One variant of the large copy: with or without an fsync of the destination in the timing. */
interface Variant {
  key: 'nofsync' | 'fsync'
  title: string
  methods: Method[]
}

const VARIANTS: Variant[] = [
  { key: 'nofsync', title: 'no fsync (dirty pages left to the kernel)', methods: METHODS },
  // cp has no fsync of its own; the variant compares the Node calls, each followed by the same fsync.
  { key: 'fsync', title: 'then open + fsync + close of the destination, inside the timing', methods: NODE_METHODS },
]

/** One copy (or, with `repeat`, the median of a loop of copies) in a fresh process; seconds. */
async function timedCopy(worker: string, method: Method, source: string, destination: string, deadline: number, repeat = 1, durable = false): Promise<number> {
  if (method.key === 'cp') {
    const started = process.hrtime.bigint()
    const child = new Child('cp', [source, destination], 'cp')
    const code = await withChildren([child], () => child.exited(deadline * 1000))
    if (code !== 0) throw new Error(`cp exited with ${code}: ${child.stderr.trim()}`)
    return Number(process.hrtime.bigint() - started) / 1e9
  }
  const args = [worker, method.key, source, destination, String(deadline), String(repeat), durable ? 'fsync' : 'nofsync']
  const child = new Child(process.execPath, args, `copy ${method.key}`)
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

/** `strace` of one extra worker run; the summary table, or why there is none. */
async function traced(straceArgs: string[], workerArgs: string[], label: string, deadline: number, limit: number): Promise<string> {
  const output = tempPath(`strace-copy-${workerArgs[1]}.txt`)
  const child = new Child('strace', [...straceArgs, '-o', output, process.execPath, ...workerArgs], `strace ${workerArgs[1]}`)
  try {
    return await withChildren([child], async () => {
      await child.next(deadline * 1000)
      if ((await child.exited(10_000)) !== 0) return `${label}: strace failed: ${child.stderr.trim()}`
      return `${label}:\n\n${straceTable(parseStraceSummary(output), limit)}`
    })
  } catch (error) {
    return `${label}: strace failed: ${(error as Error).message}`
  } finally {
    fs.rmSync(output, { force: true })
  }
}

export async function runCopy(options: BenchOptions): Promise<ScenarioResult> {
  ensurePackageBuilt()
  const size = options.smoke ? 8 * MiB : GiB
  const smallSizes = [4 * KiB, 64 * KiB, MiB]
  const smallRepeat = options.smoke ? 20 : 500
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
  // Seconds per copy, by "<variant or size>/<method>", one entry per run (NaN: failed).
  const perRun = new Map<string, number[]>()
  const record = (group: string, key: string, run: number, seconds: number) => {
    const values = perRun.get(`${group}/${key}`) ?? []
    values[run] = seconds
    perRun.set(`${group}/${key}`, values)
  }
  let diagnostics = ''

  try {
    for (let run = 0; run < options.runs; run++) {
      for (const variant of VARIANTS) {
        for (let i = 0; i < variant.methods.length; i++) {
          const method = variant.methods[(i + run) % variant.methods.length]
          log(`copy ${sizeLabel(size)} ${variant.key} run ${run + 1}/${options.runs}: ${method.key}`)
          fs.rmSync(destination, { force: true })
          settleWriteback()
          await waitForQuiet(`copy ${variant.key} ${method.key}`, options)
          prefault(Math.ceil(size * 1.25))
          try {
            const elapsed = await timedCopy(worker, method, source, destination, deadline, 1, variant.key === 'fsync')
            const copied = fs.statSync(destination).size
            const hash = sha256File(destination, ranges)
            if (copied !== size || hash !== expectedHash) {
              failures.push(`copy ${variant.key} ${method.key}: ${copied} of ${size} bytes, sha256 ${hash === expectedHash ? 'matches' : 'differs'}`)
              continue
            }
            record(variant.key, method.key, run, elapsed)
          } catch (error) {
            failures.push(`copy ${variant.key} ${method.key}: ${(error as Error).message}`)
          }
        }
      }
      // Small files: what a copy costs beyond moving bytes (opens, stats, thread handoffs).
      for (const smallSize of smallSizes) {
        const smallSource = ensureFixture(smallSize)
        const expected = sha256File(smallSource)
        for (let i = 0; i < NODE_METHODS.length; i++) {
          const method = NODE_METHODS[(i + run) % NODE_METHODS.length]
          log(`copy ${sizeLabel(smallSize)} run ${run + 1}/${options.runs}: ${method.key}`)
          await waitForQuiet(`copy ${sizeLabel(smallSize)} ${method.key}`, options)
          try {
            const seconds = await timedCopy(worker, method, smallSource, destination, deadline, smallRepeat)
            if (fs.statSync(destination).size !== smallSize || sha256File(destination) !== expected) throw new Error('the copy differs from its source')
            record(String(smallSize), method.key, run, seconds)
          } catch (error) {
            failures.push(`copy ${sizeLabel(smallSize)} ${method.key}: ${(error as Error).message}`)
          }
        }
      }
    }

    if (options.diagnose) {
      const large: string[] = []
      for (const method of NODE_METHODS) {
        log(`copy strace -c -w -f: ${method.key}`)
        fs.rmSync(destination, { force: true })
        settleWriteback()
        await waitForQuiet(`copy strace ${method.key}`, options)
        prefault(Math.ceil(size * 1.25))
        large.push(
          await traced(
            ['-c', '-w', '-f', '-e', 'trace=copy_file_range,sendfile,ftruncate,close,openat,fchmod,fstat,newfstatat,statx'],
            [worker, method.key, source, destination, String(deadline)],
            method.label,
            deadline,
            8,
          ),
        )
      }
      const small: string[] = []
      const tracedRepeat = 200
      for (const method of NODE_METHODS) {
        log(`copy 4 KiB strace -c -f: ${method.key}`)
        await waitForQuiet(`copy 4 KiB strace ${method.key}`, options)
        small.push(
          await traced(
            ['-c', '-f'],
            [worker, method.key, ensureFixture(4 * KiB), destination, String(deadline), String(tracedRepeat)],
            method.label,
            deadline,
            12,
          ),
        )
      }
      diagnostics = [
        '',
        '',
        `\`strace -c -w -f\` (wall-clock seconds per syscall) of one extra ${sizeLabel(size)} copy each without fsync, file syscalls only:`,
        '',
        large.join('\n\n'),
        '',
        `\`strace -c -f\` of one extra 4 KiB worker each: ${2 * tracedRepeat} copies (half of them the warm-up), all syscalls of all threads, top by calls; \`futex\` and \`write\` (eventfd) count the hand-offs between the main thread, libuv's threadpool and the native runtime:`,
        '',
        small.join('\n\n'),
      ].join('\n')
    }
  } finally {
    fs.rmSync(destination, { force: true })
  }

  const secondsOf = (group: string, key: string) => (perRun.get(`${group}/${key}`) ?? []).filter((value) => Number.isFinite(value))
  // Speed ratio inside one run (baseline time / our time), then the median.
  const speedVs = (group: string, key: string, baseline: string) => {
    const ours = perRun.get(`${group}/${key}`) ?? []
    const theirs = perRun.get(`${group}/${baseline}`) ?? []
    return median(ours.flatMap((seconds, run) => (Number.isFinite(seconds) && Number.isFinite(theirs[run]) ? [theirs[run] / seconds] : [])))
  }
  const gbps = (group: string, key: string) => secondsOf(group, key).map((elapsed) => size / 1e9 / elapsed)
  const versus = (group: string, method: Method) => (method.baseline ? ratio(speedVs(group, method.key, method.baseline)) : '')

  const largeTables = VARIANTS.flatMap((variant) => [
    `${sizeLabel(size)}, ${variant.title}:`,
    '',
    table(
      ['Method', 'GB/s', 'runs', 'speed vs its Node twin', 'speed vs fs.promises.copyFile'],
      variant.methods.map((method) => [
        method.label,
        fixed(median(gbps(variant.key, method.key))),
        gbps(variant.key, method.key)
          .map((value) => fixed(value))
          .join(', '),
        versus(variant.key, method),
        ratio(speedVs(variant.key, method.key, 'fs.promises.copyFile')),
      ]),
    ),
    '',
  ])
  const smallTable = table(
    [
      'Method',
      ...smallSizes.map((smallSize) => `µs per ${sizeLabel(smallSize)} copy (runs)`),
      ...smallSizes.map((smallSize) => `speed vs its Node twin, ${sizeLabel(smallSize)}`),
    ],
    NODE_METHODS.map((method) => [
      method.label,
      ...smallSizes.map((smallSize) => {
        const values = secondsOf(String(smallSize), method.key)
        return `${fixed(median(values) * 1e6, 0)} (${values.map((value) => fixed(value * 1e6, 0)).join(', ')})`
      }),
      ...smallSizes.map((smallSize) => versus(String(smallSize), method)),
    ]),
  )

  const groups = [
    ...smallSizes.map((smallSize) => ({ group: String(smallSize), label: sizeLabel(smallSize) })),
    { group: 'nofsync', label: sizeLabel(size) },
    { group: 'fsync', label: `${sizeLabel(size)} + fsync` },
  ]
  const targets: Target[] = groups.flatMap(({ group, label }) =>
    OURS.map((method) => {
      const baseline = method.baseline as string
      const twin = METHODS.find((candidate) => candidate.key === baseline) as Method
      return ratioTarget(
        `${method.label} speed, ${label}`,
        `${twin.label}${group === 'fsync' ? ', each followed by the same open + fsync + close' : ''}`,
        speedVs(group, method.key, baseline),
        '≥',
        1.0,
      )
    }),
  )
  const us = (group: string, key: string) => fixed(median(secondsOf(group, key)) * 1e6, 0)
  const gb = (group: string, key: string) => fixed(median(gbps(group, key)))
  const headlines: Headline[] = [
    {
      scenario: `copy ${sizeLabel(size)} (with fsync)`,
      ours: `\`copyFile\` ${gb('nofsync', 'copyFile')} GB/s (${gb('fsync', 'copyFile')})`,
      baselines: `\`fs.promises.copyFile\` ${gb('nofsync', 'fs.promises.copyFile')} (${gb('fsync', 'fs.promises.copyFile')}), \`cp\` ${gb('nofsync', 'cp')}`,
    },
    {
      scenario: 'copy 4 KiB / 64 KiB / 1 MiB',
      ours: `\`copyFile\` ${smallSizes.map((smallSize) => us(String(smallSize), 'copyFile')).join(' / ')} µs; \`copyFileSync\` ${smallSizes.map((smallSize) => us(String(smallSize), 'copyFileSync')).join(' / ')} µs`,
      baselines: `\`fs.promises.copyFile\` ${smallSizes.map((smallSize) => us(String(smallSize), 'fs.promises.copyFile')).join(' / ')} µs; \`fs.copyFileSync\` ${smallSizes.map((smallSize) => us(String(smallSize), 'fs.copyFileSync')).join(' / ')} µs`,
    },
  ]

  const { tmpdir, tmpfs } = machine()
  const markdown = [
    `Copies to a new file in the same directory, ${tmpdir} (${tmpfs}), source in the page cache. Each of ours is held against its Node twin: \`copyFile\` against \`fs.promises.copyFile\`, \`copyFileSync\` against \`fs.copyFileSync\`; speed = the twin's time / ours, inside each run, then the median of ${options.runs} run(s).`,
    '',
    `${sizeLabel(size)}: each copy in a fresh process; GB/s = 10^9 bytes / wall time of the call inside it. Before each copy the destination is deleted and \`sync\` run, so no writeback is in flight when a copy starts, and 1.25× the file size of memory is faulted in by a throwaway process (this VM hands freed pages back to its host, which made fresh page cache cost 3-8× more for whichever copy drew those pages). Without fsync, dirty pages a copy leaves behind are not waited for, but a close that starts writeback (ext4's auto_da_alloc after fs.copyFile's ftruncate) is inside that method's timing; with fsync, every method's timing ends with the same open + fsync + close of the destination. Verified: size and sha256 of ${options.smoke ? 'the whole file' : 'three 1 MiB samples (start, middle, end)'}.`,
    '',
    ...largeTables,
    `${smallSizes.map(sizeLabel).join(', ')}: median µs per copy of ${smallRepeat} copies after as many untimed ones, one process per method, size and run, destination deleted before each copy (untimed); verified: size and sha256 of the last copy. Lower is better; the speed ratios are the twin's time / ours.`,
    '',
    smallTable,
    '',
    targetTable(targets),
  ].join('\n')
  return { name: 'copy', title: '4. File copy', markdown: markdown + diagnostics, targets, headlines, failures }
}

if (require.main === module) runStandalone(runCopy)
