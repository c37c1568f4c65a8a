/**
 * What long transfers show: a progress bar (cli-progress) while they run, on a terminal only,
 * and one summary line (or JSON) at the end, which is all a pipe or a CI log gets.
 */
import { SingleBar } from 'cli-progress'

import { transferChannel, type TransferReport } from '../../index.js'
import { formatBytes, formatRate, formatSeconds, rateOf } from './format.js'

export interface Progress {
  /** `done` bytes so far of `total` (-1 or undefined: unknown, as for a receive). */
  update(done: number, total?: number): void
  /** Draws the last state and moves to the next line; safe to call twice. */
  stop(): void
}

const NO_PROGRESS: Progress = { update() {}, stop() {} }

// {eta_formatted} comes from cli-progress's own moving estimate; the rate is ours (bytes over wall time so far).
const KNOWN_TOTAL = '{bar} {percentage}% | {done} of {size} | {rate} | ETA {eta_formatted}'
const UNKNOWN_TOTAL = '{verb} {done} | {rate}'

/**
 * A progress bar on `stream` when it is a terminal, redrawn at most 10 times a second;
 * nothing at all otherwise. The bar starts at the first update, when the total is known.
 */
export function progressBar(stream: NodeJS.WriteStream, verb: string): Progress {
  if (!stream.isTTY) return NO_PROGRESS
  let bar: SingleBar | undefined
  let startedAt = 0
  const payload = (done: number, total: number) => ({
    verb,
    done: formatBytes(done),
    size: formatBytes(Math.max(total, 0)),
    rate: formatRate(rateOf(done, (performance.now() - startedAt) / 1000)),
  })
  return {
    update(done, total = -1) {
      if (bar === undefined) {
        startedAt = performance.now()
        bar = new SingleBar({
          stream,
          format: total >= 0 ? KNOWN_TOTAL : UNKNOWN_TOTAL,
          barsize: 30,
          barCompleteChar: '█',
          barIncompleteChar: '░',
          hideCursor: true,
          // Our own SIGINT handling stops the bar; cli-progress's would keep the process alive.
          gracefulExit: false,
          linewrap: null,
        })
        bar.start(Math.max(total, 0), done, payload(done, total))
        return
      }
      bar.update(done, payload(done, total))
    },
    stop() {
      bar?.stop()
      bar = undefined
    },
  }
}

/** How one `send`, `receive` or `copy` went. */
export interface Summary {
  command: 'send' | 'receive' | 'copy'
  bytes: number
  seconds: number
  /** From transferChannel: `sendfile`, `copy_file_range`, `read_write`, `stream`. */
  method: string
  zeroCopy: boolean
  /** Why the fallback was taken, when it was. */
  reason?: string
}

const VERBS: Record<Summary['command'], string> = { send: 'sent', receive: 'received', copy: 'copied' }

/**
 * `sent 1.0 GiB in 0.42 s, 2.5 GB/s, zero-copy`. A receive says nothing of the path: reading a
 * socket into a file always goes through user space, so there is no zero-copy to miss.
 */
export function summaryLine(summary: Summary): string {
  const line = `${VERBS[summary.command]} ${formatBytes(summary.bytes)} in ${formatSeconds(summary.seconds)}, ${formatRate(rateOf(summary.bytes, summary.seconds))}`
  if (summary.command === 'receive') return line
  if (summary.zeroCopy) return `${line}, zero-copy`
  return `${line}, not zero-copy (${summary.method}${summary.reason ? `: ${summary.reason}` : ''})`
}

export function summaryJson(summary: Summary): string {
  const bytesPerSecond = summary.seconds > 0 ? Math.round(summary.bytes / summary.seconds) : null
  return JSON.stringify({ ...summary, seconds: Number(summary.seconds.toFixed(6)), bytesPerSecond })
}

/** Writes the summary as a line or, with `--json`, as one JSON object. */
export function printSummary(stream: NodeJS.WritableStream, summary: Summary, json: boolean): void {
  stream.write(`${json ? summaryJson(summary) : summaryLine(summary)}\n`)
}

/**
 * The transferChannel report of the one operation a command runs (matched by operation and
 * target: other transfers in the process are not ours), and the summary it makes.
 */
export function watchTransfer(
  operation: TransferReport['operation'],
  target: () => unknown,
): { summary(command: 'send' | 'copy', bytes: number, seconds: number): Summary; stop(): void } {
  let report: TransferReport | undefined
  const onReport = (published: TransferReport) => {
    if (published.operation === operation && published.target === target()) report = published
  }
  transferChannel.subscribe(onReport)
  return {
    summary: (command, bytes, seconds) => ({
      command,
      bytes,
      seconds,
      method: report?.method ?? 'none',
      zeroCopy: report?.zeroCopy ?? false,
      reason: report?.reason,
    }),
    stop: () => transferChannel.unsubscribe(onReport),
  }
}
