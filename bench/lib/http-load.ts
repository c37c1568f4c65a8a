/**
 * The HTTP scenario's load: wrk when it is installed, else bench/c/http_load.c (one thread, the
 * same idea as wrk -t1). Both keep their connections alive and discard the bodies; both report
 * the body bytes received, so a response the window cut short counts by the part delivered.
 * Plus the bounded load of the event-loop delay run: http_load with a fixed number of fetches
 * per connection.
 */
import * as path from 'node:path'

import { BENCH_DIR, Child, compileC, number, withChildren } from './common'

export interface LoadResult {
  /** Complete responses. */
  requests: number
  /** Body bytes received, those of responses in flight at the end included. */
  bodyBytes: number
  /** The window actually measured. */
  seconds: number
  /** Errors the load generator saw, in words; empty when none. */
  errors: string
}

export interface LoadGenerator {
  /** How the load is made, for the results. */
  name: string
  /** `headerBytes`: the server's response header size for this file, to tell bodies from headers. */
  run(port: number, file: string, seconds: number, headerBytes: number): Promise<LoadResult>
}

export function wrkLoad(wrk: string, threads: number, connections: number): LoadGenerator {
  return {
    name: `wrk -t${threads} -c${connections}`,
    async run(port, file, seconds, headerBytes) {
      // --timeout: wrk's default 2 s would flag every 64 MiB response as a timeout (it only counts them).
      const args = ['-t', String(threads), '-c', String(connections), '-d', `${seconds}s`, '--timeout', `${seconds + 30}s`]
      const child = new Child(wrk, [...args, '-s', path.join(BENCH_DIR, 'wrk-report.lua'), `http://127.0.0.1:${port}/${file}`], 'wrk')
      return withChildren([child], async () => {
        const summary = await child.next((seconds + 30) * 1000)
        const code = await child.exited(10_000)
        if (code !== 0) throw new Error(`wrk failed (${code}):\n${child.stdout}${child.stderr}`)
        const requests = number(summary, 'requests')
        const counted = (key: string, what: string) => (number(summary, key) > 0 ? [`${number(summary, key)} ${what}`] : [])
        return {
          requests,
          // Every complete response brought one header; an unfinished one may have too, which
          // leaves at most `connections` headers (a few KiB) counted as body.
          bodyBytes: number(summary, 'bytes') - requests * headerBytes,
          seconds: number(summary, 'durationUs') / 1e6,
          errors: [
            ...counted('connectErrors', 'connect errors'),
            ...counted('readErrors', 'read errors'),
            ...counted('writeErrors', 'write errors'),
            ...counted('statusErrors', 'non-2xx/3xx responses'),
            ...counted('timeouts', 'timeouts'),
          ].join(', '),
        }
      })
    },
  }
}

export function cLoad(connections: number): LoadGenerator {
  const binary = compileC('http_load')
  return {
    name: `bench/c/http_load.c (one thread, ${connections} connections; wrk is not installed)`,
    async run(port, file, seconds) {
      const child = new Child(binary, [String(port), `/${file}`, String(connections), String(seconds), String(seconds + 30)], 'http_load')
      return withChildren([child], async () => {
        const result = await child.next((seconds + 30) * 1000)
        if ((await child.exited(10_000)) !== 0) throw new Error(`http_load failed: ${child.stderr.trim()}`)
        const errors = number(result, 'errors')
        return {
          requests: number(result, 'requests'),
          bodyBytes: number(result, 'bodyBytes'),
          seconds: number(result, 'seconds'),
          errors: errors > 0 ? `${errors} failed connections` : '',
        }
      })
    },
  }
}

/**
 * `connections` keep-alive connections, each fetching `file` `fetches` times, then closing; ends
 * when all are done, or fails after `deadlineS`.
 */
export async function boundedLoad(port: number, file: string, connections: number, fetches: number, deadlineS: number): Promise<LoadResult> {
  const child = new Child(
    compileC('http_load'),
    [String(port), `/${file}`, String(connections), String(deadlineS), String(deadlineS + 10), String(fetches)],
    'http_load',
  )
  return withChildren([child], async () => {
    const result = await child.next((deadlineS + 10) * 1000)
    if ((await child.exited(10_000)) !== 0) throw new Error(`http_load failed: ${child.stderr.trim()}`)
    const errors = number(result, 'errors')
    const requests = number(result, 'requests')
    const missing = connections * fetches - requests
    return {
      requests,
      bodyBytes: number(result, 'bodyBytes'),
      seconds: number(result, 'seconds'),
      errors: [
        errors > 0 && `${errors} failed connections`,
        missing > 0 && `${missing} of ${connections * fetches} responses not finished within ${deadlineS} s`,
      ]
        .filter(Boolean)
        .join(', '),
    }
  })
}
