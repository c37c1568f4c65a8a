/**
 * Runs every benchmark scenario and writes all the results from that one run:
 * bench/RESULTS-core.md (bulk, concurrency, small calls, copy), bench/RESULTS-http.md (HTTP),
 * bench/RESULTS.md (every target beside its baseline) and the README's performance section
 * (between its bench:start / bench:end markers). `npm run bench` is this after a build.
 *
 *   node --import tsx bench/index.ts [--smoke] [--runs N] [--only bulk,concurrency,small-calls,copy,http] [--no-diagnose] [--no-nginx] [--no-bun]
 *
 * Only a full run (no --smoke, no --only) touches those files. Smoke runs write
 * bench/build/RESULTS-smoke*.md, partial runs bench/build/RESULTS-partial*.md (the same files,
 * summary and README section included, so their generation is exercised), and never anything
 * tracked: a file of figures from different runs is what this layout exists to prevent.
 *
 * Exits non-zero when any scenario fails or delivers wrong bytes. Missed performance targets
 * are reported, never failures: the numbers depend on the machine.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import { runBulk } from './bulk'
import { runConcurrency } from './concurrency'
import { runCopy } from './copy'
import { runHttp } from './http'
import {
  BENCH_DIR,
  BUILD_DIR,
  codeUnderTest,
  fixed,
  loadChecks,
  log,
  machine,
  median,
  parseOptions,
  QUIET,
  REPO_DIR,
  sameCode,
  type BenchOptions,
  type ScenarioResult,
} from './lib/common'
import { type DetailedFile, detailedFile, hasReadmeMarkers, readmeSection, replaceReadmeSection, type RunInfo, summaryFile } from './lib/report'
import { runSmallCalls } from './small-calls'

interface Scenario {
  name: string
  title: string
  /** Which detailed file its tables go to. */
  file: 'core' | 'http'
  run: (options: BenchOptions) => Promise<ScenarioResult>
}

const SCENARIOS: Scenario[] = [
  { name: 'bulk', title: '1. Bulk: one file, one socket', file: 'core', run: runBulk },
  { name: 'concurrency', title: '2. Concurrency: 1000 connections at once', file: 'core', run: runConcurrency },
  { name: 'small-calls', title: '3. Small calls: 4 KiB sendfileSync', file: 'core', run: runSmallCalls },
  { name: 'copy', title: '4. File copy', file: 'core', run: runCopy },
  { name: 'http', title: '5. HTTP file serving', file: 'http', run: runHttp },
]

const DETAILED = {
  core: { name: 'RESULTS-core.md', title: 'Core benchmark results', covers: 'bulk, concurrency, small calls, copy' },
  http: { name: 'RESULTS-http.md', title: 'HTTP benchmark results', covers: 'HTTP file serving' },
}
const SUMMARY = 'RESULTS.md'
const README = path.join(REPO_DIR, 'README.md')

function loadSummary(): string {
  if (loadChecks.length === 0) return ''
  const busy = loadChecks.filter((check) => check.busy > QUIET)
  const waited = loadChecks.reduce((sum, check) => sum + check.waitedS, 0)
  return [
    `Other load: before each of the ${loadChecks.length} measurements the bench waited for the machine to be ≤ ${QUIET * 100}% busy (waited ${fixed(waited, 0)} s in all). CPU busy at the start of measurements: median ${fixed(median(loadChecks.map((check) => check.busy)) * 100, 0)}%, max ${fixed(Math.max(...loadChecks.map((check) => check.busy)) * 100, 0)}%.`,
    busy.length === 0
      ? 'No measurement started while other work was running.'
      : `**${busy.length} measurement(s) started while other processes kept the machine busy** (the wait ran out): ${busy.map((check) => `${check.label} ${fixed(check.busy * 100, 0)}%`).join(', ')}. Their figures are less trustworthy than the rest.`,
  ].join(' ')
}

/** The command as a reader would type it to get the same files. */
function commandLine(argv: string[]): string {
  if (process.env.npm_lifecycle_event === 'bench' && argv.length === 0) return 'npm run bench'
  return `${process.env.BENCH_RUNS ? `BENCH_RUNS=${process.env.BENCH_RUNS} ` : ''}node --import tsx bench/index.ts${argv.length > 0 ? ` ${argv.join(' ')}` : ''}`
}

/** Where this run's files go: the tracked ones only for a full run. */
function outputs(options: BenchOptions): { directory: string; prefix: string; readme: string } {
  if (options.smoke) return { directory: BUILD_DIR, prefix: 'smoke-', readme: path.join(BUILD_DIR, 'smoke-README-section.md') }
  if (options.only.size > 0) return { directory: BUILD_DIR, prefix: 'partial-', readme: path.join(BUILD_DIR, 'partial-README-section.md') }
  return { directory: BENCH_DIR, prefix: '', readme: README }
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, text)
  log(`wrote ${path.relative(process.cwd(), file)}`)
}

export async function runAll(argv: string[]): Promise<{ failures: string[]; summary: string }> {
  const options = parseOptions(argv)
  for (const name of options.only) if (!SCENARIOS.some((scenario) => scenario.name === name)) throw new Error(`--only: no scenario named ${name}`)
  // Checked before the run, not after fifteen minutes of it.
  if (outputs(options).readme === README && !hasReadmeMarkers(fs.readFileSync(README, 'utf8')))
    throw new Error('README.md lacks the bench:start / bench:end markers')
  const started = new Date()
  const code = codeUnderTest()
  const results: Array<{ scenario: Scenario; result: ScenarioResult }> = []
  for (const scenario of SCENARIOS) {
    if (options.only.size > 0 && !options.only.has(scenario.name)) continue
    log(`scenario ${scenario.name}${options.smoke ? ' (smoke)' : ''}`)
    try {
      results.push({ scenario, result: await scenario.run(options) })
    } catch (error) {
      results.push({
        scenario,
        result: {
          name: scenario.name,
          title: scenario.title,
          markdown: `Failed to run: ${(error as Error).message}`,
          targets: [],
          headlines: [],
          failures: [`${scenario.name}: ${(error as Error).stack ?? String(error)}`],
        },
      })
    }
  }
  const codeAtEnd = codeUnderTest()
  const run: RunInfo = {
    id: started.toISOString(),
    command: commandLine(argv),
    durationS: (Date.now() - started.getTime()) / 1000,
    host: machine(),
    code,
    codeAtEnd: sameCode(code, codeAtEnd) ? undefined : codeAtEnd,
    runs: options.runs,
    smoke: options.smoke,
    load: loadSummary(),
  }

  const { directory, prefix, readme } = outputs(options)
  const all = results.map(({ result }) => result)
  const detailed: DetailedFile[] = []
  for (const kind of ['core', 'http'] as const) {
    const mine = results.filter(({ scenario }) => scenario.file === kind).map(({ result }) => result)
    if (mine.length === 0) continue
    const { name, title, covers } = DETAILED[kind]
    const file = path.join(directory, `${prefix}${name}`)
    // The analysis is kept from the tracked file; smoke and partial files carry none.
    write(file, detailedFile(title, run, mine, prefix === '' ? file : undefined))
    detailed.push({ file: `${prefix}${name}`, covers, sections: new Map(mine.map((result) => [result.name, result.title])) })
  }
  const summary = summaryFile(run, all, detailed, prefix === '' ? path.join(BENCH_DIR, SUMMARY) : undefined)
  write(path.join(directory, `${prefix}${SUMMARY}`), summary)
  const section = readmeSection(run, all)
  write(readme, readme === README ? replaceReadmeSection(fs.readFileSync(README, 'utf8'), section) : `${section}\n`)
  log(`done in ${fixed(run.durationS, 0)} s`)
  return { failures: all.flatMap((result) => result.failures), summary }
}

if (require.main === module) {
  runAll(process.argv.slice(2)).then(
    ({ failures, summary }) => {
      console.log(summary)
      for (const failure of failures) console.error(`FAILED: ${failure}`)
      process.exit(failures.length > 0 ? 1 : 0)
    },
    (error: unknown) => {
      console.error(error)
      process.exit(1)
    },
  )
}
