/**
 * File copies in their own process, so no method inherits another's state (heap, threads, the
 * page cache of a previous destination), and prints {"seconds"}: the wall time of the call
 * alone, without process startup.
 *
 *   node copy-worker.js <copyFile|copyFileSync|fs.promises.copyFile|fs.copyFileSync> <src> <dst> <deadline-seconds> [repeat] [fsync]
 *
 * With `repeat` above 1 (small files), the destination is deleted and the copy repeated that
 * many times after as many untimed ones, and "seconds" is the median copy. With `fsync`, each
 * timed copy ends with the destination opened, fsync'd and closed, the same calls for every
 * method (promise-based for the async ones, sync for the sync ones): a durable copy.
 */
import * as fs from 'node:fs'
import { copyFile, copyFileSync } from '../..'

const [method, source, destination, deadlineText, repeatText, durability] = process.argv.slice(2)
const repeat = Number(repeatText ?? 1)
const durable = durability === 'fsync'

setTimeout(() => {
  process.stderr.write(`copy-worker ${method}: deadline passed\n`)
  process.exit(3)
}, Number(deadlineText) * 1000).unref()

async function syncDestination(): Promise<void> {
  const handle = await fs.promises.open(destination, 'r+')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

function syncDestinationSync(): void {
  const fd = fs.openSync(destination, 'r+')
  try {
    fs.fsyncSync(fd)
  } finally {
    fs.closeSync(fd)
  }
}

const METHODS: Record<string, () => Promise<unknown>> = {
  copyFile: async () => {
    await copyFile(source, destination)
    if (durable) await syncDestination()
  },
  copyFileSync: async () => {
    copyFileSync(source, destination)
    if (durable) syncDestinationSync()
  },
  'fs.promises.copyFile': async () => {
    await fs.promises.copyFile(source, destination)
    if (durable) await syncDestination()
  },
  'fs.copyFileSync': async () => {
    fs.copyFileSync(source, destination)
    if (durable) syncDestinationSync()
  },
}

async function main(): Promise<void> {
  const copy = METHODS[method]
  if (copy === undefined) throw new Error(`unknown method ${method}`)
  if (repeat <= 1) {
    const started = process.hrtime.bigint()
    await copy()
    const seconds = Number(process.hrtime.bigint() - started) / 1e9
    process.stdout.write(`${JSON.stringify({ seconds })}\n`)
    return
  }
  const times: number[] = []
  for (let i = 0; i < 2 * repeat; i++) {
    fs.rmSync(destination, { force: true })
    const started = process.hrtime.bigint()
    await copy()
    // The first half warms up the JIT, the threadpool and the native runtime.
    if (i >= repeat) times.push(Number(process.hrtime.bigint() - started) / 1e9)
  }
  times.sort((a, b) => a - b)
  process.stdout.write(`${JSON.stringify({ seconds: times[times.length >> 1] })}\n`)
}

main().catch((error: unknown) => {
  process.stderr.write(`copy-worker ${method}: ${(error as Error).stack ?? String(error)}\n`)
  process.exit(1)
})
