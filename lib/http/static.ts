/** createStaticHandler: a directory served as a request handler or connect/Express middleware. */
import { setMaxListeners } from 'node:events'

import { invalidArgValue } from '../errors.js'
import { validateString } from '../validate.js'
import { type FileContext, respondWithFile } from './file-response.js'
import { type StaticHandler, type StaticOptions, staticSettings } from './options.js'
import { type AnyRequest, type AnyResponse, type OutgoingResponse, PLAIN, type Refusal, isRefusal, refuse, writeHead } from './response.js'
import { StaticFiles } from './static-files.js'
import { directoryLocation, hasDotSegment, parseTarget } from './target.js'

/** How a request went: answered here, or a miss that `next()` may answer instead. */
type Decision = { kind: 'done' } | { kind: 'miss'; refusal: Refusal }

const DONE: Decision = { kind: 'done' }

function miss(refusal: Refusal): Decision {
  return { kind: 'miss', refusal }
}

/**
 * A request handler that serves the files under `root` with {@link serveFile}'s headers,
 * ranges and preconditions, for `http.createServer(handler)` (or `http2.createServer`) or as
 * connect/Express middleware (`app.use(handler)`; it uses `req.url`, which Express makes
 * relative to the mount point).
 *
 * - GET and HEAD only: other methods get 405 with `Allow: GET, HEAD`.
 * - The URL path is percent-decoded once; a malformed encoding → 400; a NUL byte → 400.
 * - Nothing outside `root` is ever served: a `..` segment (however encoded, `/` or `\`) → 403;
 *   the path is opened beneath an fd of the root directory in one native call, with no
 *   check-then-open window (Linux: `openat2(RESOLVE_BENEATH)`; elsewhere, and for paths with a
 *   symlink, a walk that opens each directory with `O_NOFOLLOW` relative to the one before and
 *   resolves symlinks itself). A directory swapped for a symlink while a request resolves leads
 *   nowhere. Symlinks below root follow `symlinks` (default `'inside'`: only while they stay
 *   inside root); a path that leads out → 404. Without the native module, the real path is
 *   resolved and checked, then opened with `O_NOFOLLOW` (a swap between the two is not caught).
 * - Dotfiles (a path segment starting with `.`, in the URL or on the path as resolved below the
 *   root, so a symlink to a dotfile counts): 404 by default, see `dotfiles`.
 * - A directory: `/dir` → 301 to `/dir/`; `/dir/` → the first of its `index` files that exists,
 *   else 404. `/about` → `about.html` with `extensions: ['html']`, when `about` does not exist.
 *   Anything else that is not a regular file (a FIFO, a Unix socket, a device) → 404.
 * - Open files are cached (`openFileCache`, default 1000 entries, 1000 ms): a hot path costs no
 *   open, fstat or close; a file replaced, deleted or changed is served as it now is at most
 *   `validMs` after the change; `handler.close()` closes the cached fds. A small response whose
 *   bytes are in the page cache is sent at once from the event loop, head and body together.
 * - `root` is resolved again every `validMs` (1000 ms), so a symlinked root switched by an
 *   atomic redeploy (`current -> rel2`) serves the new release without a restart. A `root` that
 *   does not exist answers like a missing file, and emits one `ZeroCopyWarning`
 *   (`ZEROCOPY_STATIC_ROOT_MISSING`) per handler; it is served as soon as it exists.
 * - Misses (404) and other methods (405) call `next()` when there is a `next` and
 *   `fallthrough` is on; 400 and 403 are always answered here.
 * - Unexpected errors (EMFILE, EIO, a root it may not search) before the headers go to
 *   `next(error)`, or become a 500 without `next`; after the headers, the connection is
 *   destroyed. The returned handler never throws and never leaves a rejected promise behind.
 * - Bad arguments throw here, with Node's codes: `ERR_INVALID_ARG_TYPE` for a wrong type,
 *   `ERR_INVALID_ARG_VALUE` for a value of the right type that is not allowed (an empty `root`,
 *   `dotfiles: 'maybe'`, `index: '../x'`), `ERR_OUT_OF_RANGE` for a negative or non-finite `maxAge`.
 *
 * @example
 * ```ts
 * const statics = createStaticHandler('./public', { maxAge: 600 })
 * http.createServer(statics).listen(8080)
 * // or, as middleware: app.use('/assets', createStaticHandler('./dist', { maxAge: 31536000, immutable: true }))
 * ```
 */
export function createStaticHandler(root: string, options?: StaticOptions): StaticHandler {
  validateString(root, 'root')
  if (root === '') throw invalidArgValue('root', root, 'must be a non-empty path')
  if (root.includes('\0')) throw invalidArgValue('root', root, 'must be a string without null bytes')
  const settings = staticSettings(options)
  const { index, extensions, dotfiles, fallthrough } = settings
  // One signal for every request: each transfer listens to it, more than 10 at once is normal.
  if (settings.signal !== undefined) setMaxListeners(0, settings.signal)
  const files = new StaticFiles(root, settings)

  /** The dotfile policy for a path's segments: undefined when they may be served. */
  function dotfileDecision(req: AnyRequest, res: OutgoingResponse, dotted: boolean): Decision | undefined {
    if (dotfiles === 'allow' || !dotted) return undefined
    if (dotfiles === 'deny') return refused(req, res, { status: 403 })
    return miss({ status: 404 })
  }

  async function handle(req: AnyRequest, res: AnyResponse): Promise<Decision> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return miss({ status: 405, headers: { Allow: 'GET, HEAD' } })
    const target = parseTarget(req.url)
    if (isRefusal(target)) return refused(req, res, target)
    const asked = dotfileDecision(req, res, hasDotSegment(target.segments))
    if (asked !== undefined) return asked
    const opening = files.open(target.relative)
    // A hot file is there at once: no await, no turn of the microtask queue.
    let found = opening instanceof Promise ? await opening : opening
    // `/about` → `about.html`: only for a path that names nothing, never for `/about/`.
    if (isRefusal(found) && found.status === 404 && !target.wantsDirectory && target.relative.length > 0) {
      const last = target.relative.length - 1
      for (const extension of extensions) {
        const candidate = await files.open([...target.relative.slice(0, last), target.relative[last] + extension])
        if (!isRefusal(candidate)) {
          found = candidate
          break
        }
      }
    }
    if (isRefusal(found)) return miss(found)
    try {
      // The real path too: a symlink `env -> .env` is a dotfile.
      const opened = dotfileDecision(req, res, found.dotted)
      if (opened !== undefined) return opened
      if (found.file.stats.isDirectory()) {
        if (index.length === 0) return miss({ status: 404 })
        if (!target.wantsDirectory) return redirectToDirectory(req, res)
        return await serveIndex(req, res, target.relative)
      }
      // /file.txt/ names a directory that does not exist.
      if (target.wantsDirectory) return miss({ status: 404 })
      await respondWithFile(req, res, found.file, settings, fileContext(found.names))
      return DONE
    } finally {
      found.release()
    }
  }

  /**
   * What respondWithFile needs beyond the fd: precompressed variants (`app.js.br`) are looked
   * for beneath the root like any file, and only served when they may be (no dotfile on their
   * resolved path, a regular file). What the hook returns is released when the response is done.
   */
  function fileContext(names: string[]): FileContext {
    if (settings.precompressed.length === 0 || names.length === 0) return {}
    const last = names.length - 1
    return {
      openVariant: async (suffix) => {
        const found = await files.open([...names.slice(0, last), names[last] + suffix])
        if (isRefusal(found)) return undefined
        if (!found.file.stats.isFile() || (found.dotted && dotfiles !== 'allow')) {
          found.release()
          return undefined
        }
        return { ...found.file, close: async () => found.release(), closeSync: () => found.release() }
      },
    }
  }

  /** The first index file that exists in the directory, or a miss. */
  async function serveIndex(req: AnyRequest, res: AnyResponse, directory: string[]): Promise<Decision> {
    for (const name of index) {
      const found = await files.open([...directory, name])
      if (isRefusal(found)) {
        if (found.status === 404) continue
        return miss(found)
      }
      try {
        const hidden = dotfileDecision(req, res, found.dotted)
        if (hidden !== undefined) return hidden
        // An index that is itself a directory is not an index file.
        if (!found.file.stats.isFile()) continue
        await respondWithFile(req, res, found.file, settings, fileContext(found.names))
        return DONE
      } finally {
        found.release()
      }
    }
    return miss({ status: 404 })
  }

  function staticHandler(req: AnyRequest, res: AnyResponse, next?: (err?: unknown) => void): void {
    handle(req, res).then(
      (decision) => {
        if (decision.kind === 'done') return
        if (next !== undefined && fallthrough) return callNext(res, next)
        lastResort(res, () => refuse(req, res, decision.refusal))
      },
      (error: unknown) => {
        if (res.headersSent) {
          // The status line is out; only closing the connection can signal the failure.
          res.destroy()
          return
        }
        if (next !== undefined) return callNext(res, next, error)
        lastResort(res, () => refuse(req, res, { status: 500 }))
      },
    )
  }
  return Object.assign(staticHandler, { close: () => files.close() })
}

/** Calls the next middleware; if it throws, answers 500 rather than leave a rejected promise. */
function callNext(res: OutgoingResponse, next: (err?: unknown) => void, error?: unknown): void {
  try {
    if (error === undefined) next()
    else next(error)
  } catch {
    if (res.headersSent) res.destroy()
    else
      lastResort(res, () => {
        writeHead(res, 500, { 'Content-Type': PLAIN })
        res.end('500 Internal Server Error\n')
      })
  }
}

/** Answers with `answer`; if even that throws (a broken `writeHead` hook), closes the connection: a handler must not throw. */
function lastResort(res: OutgoingResponse, answer: () => void): void {
  try {
    answer()
  } catch {
    res.destroy()
  }
}

/** Answered here whatever `fallthrough` says (400, 403, 301): not a miss another handler could serve. */
function refused(req: AnyRequest, res: OutgoingResponse, refusal: Refusal): Decision {
  refuse(req, res, refusal)
  return DONE
}

function redirectToDirectory(req: AnyRequest, res: OutgoingResponse): Decision {
  // Express rewrites req.url under a mount point; the browser needs the URL it asked for.
  const url = (req as AnyRequest & { originalUrl?: string }).originalUrl ?? req.url ?? '/'
  return refused(req, res, { status: 301, headers: { Location: directoryLocation(url) } })
}
