/**
 * Bun's own static file answer, `new Response(Bun.file(path))` (Bun sends it with sendfile on
 * Linux), as a baseline for the HTTP scenario. Run by Bun, not Node:
 * `bun bench/http-bun-server.ts <root> <deadline-seconds>`.
 *
 * stdout: `{"port","pid"}` once listening. Exits by itself once the deadline passes.
 */
import * as path from 'node:path'

/** The little of Bun's API this uses (bun-types is not a dependency; this file is type-checked by Node's tsc). */
declare const Bun: {
  serve(options: { hostname: string; port: number; fetch(request: Request): Response }): { port: number }
  file(path: string): Blob
}

const [root, deadlineText] = process.argv.slice(2)
if (!root) throw new Error('usage: bun http-bun-server.ts <root> [deadline-seconds]')

setTimeout(
  () => {
    process.stderr.write('http-bun-server: deadline passed\n')
    process.exit(3)
  },
  Number(deadlineText ?? 600) * 1000,
).unref()

const server = Bun.serve({
  hostname: '127.0.0.1',
  port: 0,
  fetch(request) {
    // The file a bench URL names: its last path segment, inside root, as in bench/http-server.ts.
    return new Response(Bun.file(path.join(root, path.basename(new URL(request.url).pathname))))
  },
})
process.stdout.write(`${JSON.stringify({ port: server.port, pid: process.pid })}\n`)
