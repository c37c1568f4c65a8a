/**
 * Soak: 100,000 small-file transfers and 1,000 of 8 MiB, with injected peer resets and
 * aborts, in one process. Passes when RSS grows less than 20 MiB after warm-up, the fd count
 * ends where it started, and every error is one that was injected.
 *
 *   node --expose-gc --import tsx scripts/soak.ts [--small 100000] [--big 1000]
 */
import * as crypto from 'node:crypto'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import { parseArgs } from 'node:util'

import { sendFile } from '..'

const { values } = parseArgs({ options: { small: { type: 'string', default: '100000' }, big: { type: 'string', default: '1000' } } })
const SMALL_TRANSFERS = Number(values.small)
const BIG_TRANSFERS = Number(values.big)
const SMALL_PER_CONNECTION = 100
const SMALL_CONCURRENCY = 32
const BIG_CONCURRENCY = 16
const MiB = 1024 * 1024

const fdCount = () => fs.readdirSync('/proc/self/fd').length
const rssMiB = () => process.memoryUsage().rss / MiB

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sendfile-soak-'))
const smallFile = path.join(dir, 'small.bin')
const bigFile = path.join(dir, 'big.bin')
fs.writeFileSync(smallFile, crypto.randomBytes(4096))
fs.writeFileSync(bigFile, crypto.randomBytes(8 * MiB))

const errors = new Map<string, number>()
const count = (key: string) => errors.set(key, (errors.get(key) ?? 0) + 1)

async function listen(server: net.Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0, backlog: 1024 }, resolve))
  return (server.address() as net.AddressInfo).port
}

/** Each connection receives SMALL_PER_CONNECTION copies of the small file back to back. */
async function smallPhase(transfers: number): Promise<void> {
  const server = net.createServer(async (socket) => {
    socket.on('error', () => count('small: socket error'))
    try {
      for (let i = 0; i < SMALL_PER_CONNECTION; i++) await sendFile(socket, smallFile)
      socket.end()
    } catch (error) {
      count(`small: ${(error as NodeJS.ErrnoException).code}`)
      socket.destroy()
    }
  })
  const port = await listen(server)
  let started = 0
  const expected = SMALL_PER_CONNECTION * 4096
  const worker = async () => {
    while (started < transfers / SMALL_PER_CONNECTION) {
      started++
      const received = await new Promise<number>((resolve) => {
        let bytes = 0
        const client = net.connect(port, '127.0.0.1')
        client
          .on('data', (chunk) => (bytes += chunk.length))
          .on('end', () => resolve(bytes))
          .on('error', () => resolve(-1))
      })
      if (received !== expected) count(`small: received ${received} of ${expected}`)
    }
  }
  await Promise.all(Array.from({ length: SMALL_CONCURRENCY }, worker))
  await new Promise((resolve) => server.close(resolve))
}

/** 8 MiB each; every 20th client resets midway, every 20th (offset by 10) transfer is aborted. */
async function bigPhase(transfers: number): Promise<void> {
  let connection = 0
  const server = net.createServer(async (socket) => {
    const index = connection++
    socket.on('error', () => {})
    const controller = new AbortController()
    if (index % 20 === 10) setTimeout(() => controller.abort(), 1)
    try {
      await sendFile(socket, bigFile, { signal: controller.signal })
      socket.end()
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? String(error)
      const injected = (index % 20 === 10 && code === 'ABORT_ERR') || (index % 20 === 0 && ['ECONNRESET', 'EPIPE'].includes(code))
      count(`big: ${injected ? 'injected ' : 'UNEXPECTED '}${code}`)
      socket.destroy()
    }
  })
  const port = await listen(server)
  let started = 0
  const worker = async () => {
    while (started < transfers) {
      const index = started++
      await new Promise<void>((resolve) => {
        let bytes = 0
        const client = net.connect(port, '127.0.0.1')
        client.on('data', (chunk) => {
          bytes += chunk.length
          if (index % 20 === 0 && bytes > MiB) client.resetAndDestroy()
        })
        client.on('close', () => resolve()).on('error', () => {})
      })
    }
  }
  await Promise.all(Array.from({ length: BIG_CONCURRENCY }, worker))
  await new Promise((resolve) => server.close(resolve))
}

/** The mix runs in rounds; the first is the warm-up, and RSS after it is the baseline. */
const ROUNDS = 10

async function main(): Promise<void> {
  const started = Date.now()
  const fdsBefore = fdCount()
  let rssAfterWarmup = 0
  let peakRss = rssMiB()
  const rssByRound: number[] = []
  const sampler = setInterval(() => (peakRss = Math.max(peakRss, rssMiB())), 100)
  for (let round = 0; round < ROUNDS; round++) {
    await smallPhase(SMALL_TRANSFERS / ROUNDS)
    await bigPhase(BIG_TRANSFERS / ROUNDS)
    global.gc?.()
    rssByRound.push(+rssMiB().toFixed(1))
    if (round === 0) rssAfterWarmup = rssMiB()
  }
  clearInterval(sampler)
  // Let closes finish before counting descriptors.
  for (let attempt = 0; attempt < 50 && fdCount() > fdsBefore; attempt++) await new Promise((resolve) => setTimeout(resolve, 100))
  global.gc?.()
  const rssEnd = rssMiB()
  const fdsAfter = fdCount()
  fs.rmSync(dir, { recursive: true, force: true })
  const unexpected = [...errors].filter(([key]) => !key.startsWith('big: injected'))
  const growth = rssEnd - rssAfterWarmup
  const result = {
    transfers: { small: SMALL_TRANSFERS, big: BIG_TRANSFERS },
    seconds: (Date.now() - started) / 1000,
    rssMiB: { afterWarmup: +rssAfterWarmup.toFixed(1), end: +rssEnd.toFixed(1), growth: +growth.toFixed(1), peak: +peakRss.toFixed(1), byRound: rssByRound },
    fds: { before: fdsBefore, after: fdsAfter },
    errors: Object.fromEntries(errors),
  }
  console.log(JSON.stringify(result, null, 2))
  const failures = [
    growth >= 20 && `RSS grew ${growth.toFixed(1)} MiB after warm-up`,
    fdsAfter > fdsBefore && `fds ${fdsBefore} → ${fdsAfter}`,
    unexpected.length > 0 && `unexpected errors: ${JSON.stringify(unexpected)}`,
  ].filter(Boolean)
  if (failures.length > 0) {
    console.error(`soak failed: ${failures.join('; ')}`)
    process.exit(1)
  }
  console.log('soak passed')
}

main().catch((error: unknown) => {
  console.error(error)
  process.exit(1)
})
