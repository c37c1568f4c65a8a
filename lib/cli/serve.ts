/** `zerocopy serve [dir]`: the static handler over node:http, with an access log and a graceful stop. */
import * as fs from 'node:fs'
import * as http from 'node:http'
import type * as net from 'node:net'
import * as path from 'node:path'

import { createStaticHandler } from '../../index.js'
import { BodyReports, logResponse } from './access-log.js'
import { type CommandSpec, type ParsedCommand, choiceOption, flag, integerOption, stringOption } from './args.js'
import { CommandFailure, EXIT_OK, UsageError, describeError } from './errors.js'
import { listen, urlHost } from './net.js'
import { type StopSignal, onStopSignal } from './signals.js'

/** How long a stop waits for responses in flight before closing their connections. */
const GRACE_MS = 10_000
const DOTFILES = ['allow', 'deny', 'ignore'] as const

export const serveSpec: CommandSpec = {
  name: 'serve',
  synopsis:
    '[dir] [--port 8080] [--host 127.0.0.1] [--max-age S] [--no-cache] [--dotfiles allow|deny|ignore] [--ext html,htm] [--precompressed] [--cors] [--quiet]',
  summary: 'serve a directory over HTTP',
  description: 'Serve a directory over HTTP with sendfile(2): ranges, conditional requests, index.html, no path outside it.',
  operands: ['[dir]'],
  required: 0,
  options: {
    port: { type: 'string', short: 'p', placeholder: 'N', description: 'port to listen on (default 8080; 0 takes a free one)' },
    host: { type: 'string', placeholder: 'HOST', description: 'address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)' },
    'max-age': { type: 'string', placeholder: 'S', description: 'Cache-Control max-age in seconds (default 0: caches revalidate)' },
    'no-cache': { type: 'boolean', description: 'send Cache-Control: no-cache' },
    dotfiles: {
      type: 'string',
      placeholder: 'POLICY',
      description: 'allow, deny (403) or ignore (404) files whose path has a segment starting with a dot (default ignore)',
    },
    ext: {
      type: 'string',
      placeholder: 'LIST',
      description: 'extensions to try, comma-separated, for a path that names nothing (--ext html: /about serves about.html)',
    },
    precompressed: {
      type: 'boolean',
      description: 'send file.br, file.zst or file.gz beside a file to clients whose Accept-Encoding takes it',
    },
    cors: { type: 'boolean', description: 'send Access-Control-Allow-Origin: *' },
    quiet: { type: 'boolean', short: 'q', description: 'no access log' },
  },
  notes: [
    'Logs one line per response: time, method, path, status, body bytes, milliseconds, and how the body went (zero-copy, stream, or - without one).',
    `SIGINT or SIGTERM stops accepting, lets responses in flight finish (at most ${GRACE_MS / 1000} s), and exits 0; a second signal closes them at once.`,
  ],
}

export async function serveCommand({ values, operands: [dirOperand] }: ParsedCommand): Promise<number> {
  const root = path.resolve(dirOperand ?? '.')
  const port = integerOption(values, 'port', 0, 65535) ?? 8080
  const host = stringOption(values, 'host') ?? '127.0.0.1'
  const maxAge = integerOption(values, 'max-age', 0)
  const noCache = flag(values, 'no-cache')
  if (noCache && maxAge !== undefined) throw new UsageError("options '--no-cache' and '--max-age' contradict each other")
  const dotfiles = choiceOption(values, 'dotfiles', DOTFILES)
  const quiet = flag(values, 'quiet')
  const extensions = extensionsOption(values)
  const precompressed = flag(values, 'precompressed')
  await checkDirectory(root)

  const headers: Record<string, string> = {}
  if (noCache) headers['Cache-Control'] = 'no-cache'
  if (flag(values, 'cors')) headers['Access-Control-Allow-Origin'] = '*'
  const handler = createStaticHandler(root, { maxAge, dotfiles, headers, extensions, precompressed })

  const reports = new BodyReports()
  const inFlight = new InFlight()
  let stopping = false
  const server = http.createServer((req, res) => {
    if (!quiet) logResponse(req, res, reports, (line) => process.stdout.write(`${line}\n`))
    inFlight.add(res)
    // A request that arrives on a kept-alive connection during the stop is its last one.
    if (stopping) res.setHeader('Connection', 'close')
    handler(req, res)
  })
  const stops = stopSignals()
  try {
    await listen(server, port, host)
    // Accept failures (EMFILE under load) pass; a server that dies of one would drop every client.
    server.on('error', (error) => process.stderr.write(`zerocopy serve: ${describeError(error)}\n`))
    const address = server.address() as net.AddressInfo
    process.stdout.write(`serving ${root} at http://${urlHost(address.address)}:${address.port}/\n`)

    const signal = await stops.first
    stopping = true
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeIdleConnections()
    // Said once the listening socket is closed: whoever reads it may count on refused connections.
    if (!quiet) process.stdout.write(`${signal}: stopping, ${inFlight.size} response${inFlight.size === 1 ? '' : 's'} in flight\n`)
    let graceTimer: NodeJS.Timeout | undefined
    await Promise.race([inFlight.drained(), stops.second, new Promise<void>((resolve) => (graceTimer = setTimeout(resolve, GRACE_MS)))])
    clearTimeout(graceTimer)
    // Kept-alive connections would hold the process open; the ones still busy ran out of time.
    server.closeAllConnections()
    await closed
    return EXIT_OK
  } finally {
    server.close()
    server.closeAllConnections()
    stops.dispose()
    reports.dispose()
    handler.close()
  }
}

/** `--ext html,htm` as the handler takes it: names without their dot. */
function extensionsOption(values: ParsedCommand['values']): string[] | undefined {
  const text = stringOption(values, 'ext')
  if (text === undefined) return undefined
  const extensions = text.split(',').map((extension) => extension.trim().replace(/^\./, ''))
  if (extensions.some((extension) => extension === '' || /[\\/\0]/.test(extension)))
    throw new UsageError(`option '--ext' must be extensions separated by commas (html,htm), not '${text}'`)
  return extensions
}

/** A missing root would serve 404s forever: refuse to start instead. */
async function checkDirectory(root: string): Promise<void> {
  let stats: fs.Stats
  try {
    stats = await fs.promises.stat(root)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CommandFailure(`no such directory: ${root}`)
    throw error
  }
  if (!stats.isDirectory()) throw new CommandFailure(`not a directory: ${root}`)
}

/** The responses not yet closed (complete or cut off), and a wait for none. */
class InFlight {
  private readonly responses = new Set<http.ServerResponse>()
  private waiters: Array<() => void> = []

  get size(): number {
    return this.responses.size
  }

  add(res: http.ServerResponse): void {
    this.responses.add(res)
    res.once('close', () => {
      this.responses.delete(res)
      if (this.responses.size > 0) return
      for (const wake of this.waiters) wake()
      this.waiters = []
    })
  }

  drained(): Promise<void> {
    if (this.responses.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}

/** The first SIGINT/SIGTERM (stop gracefully) and the second (stop now). */
function stopSignals(): { first: Promise<StopSignal>; second: Promise<void>; dispose: () => void } {
  let onFirst: (signal: StopSignal) => void = () => {}
  let onSecond: () => void = () => {}
  const first = new Promise<StopSignal>((resolve) => (onFirst = resolve))
  const second = new Promise<void>((resolve) => (onSecond = resolve))
  let received = 0
  const dispose = onStopSignal((signal) => (received++ === 0 ? onFirst(signal) : onSecond()))
  return { first, second, dispose }
}
