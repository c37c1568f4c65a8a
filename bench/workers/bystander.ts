/**
 * An idle Node process that measures, during the C server's run, what the Node servers measure
 * about themselves: event-loop delay, fs.promises.stat latency and time spent waiting for a
 * CPU. It serves nothing, so whatever it sees is what the machine's load alone does to any
 * Node process: the floor under the Node servers' figures.
 *
 *   node bystander.js <file> <deadline-seconds>
 *
 * stdout: {"ready":true} once measuring; on SIGUSR2 {"loopP99Ms","loopMaxMs","statP99Ms",
 * "statSamples","eventLoopUtilization","mainThreadRunnableWaitMs"} and exit.
 */
import * as fs from 'node:fs'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'

const [file, deadlineText] = process.argv.slice(2)

setTimeout(() => {
  process.stderr.write('bystander: deadline passed\n')
  process.exit(3)
}, Number(deadlineText) * 1000).unref()

function runnableWaitNs(): number {
  return Number(fs.readFileSync(`/proc/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/)[1])
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]
}

// The same 1 ms resolution as the servers it stands beside.
const loopDelay = monitorEventLoopDelay({ resolution: 1 })
const statLatencies: number[] = []
let measuring = true
loopDelay.enable()
const eluAtStart = performance.eventLoopUtilization()
const waitAtStart = runnableWaitNs()

async function statLoop(): Promise<void> {
  while (measuring) {
    const started = performance.now()
    await fs.promises.stat(file)
    statLatencies.push(performance.now() - started)
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
}
void statLoop()

process.on('SIGUSR2', () => {
  measuring = false
  loopDelay.disable()
  process.stdout.write(
    `${JSON.stringify({
      loopP99Ms: loopDelay.count > 0 ? loopDelay.percentile(99) / 1e6 : null,
      loopMaxMs: loopDelay.count > 0 ? loopDelay.max / 1e6 : null,
      statP99Ms: percentile(statLatencies, 99),
      statSamples: statLatencies.length,
      eventLoopUtilization: performance.eventLoopUtilization(eluAtStart).utilization,
      mainThreadRunnableWaitMs: (runnableWaitNs() - waitAtStart) / 1e6,
    })}\n`,
  )
  setImmediate(() => process.exit(0))
})
process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
