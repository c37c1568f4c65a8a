/**
 * The files under a static handler's root: opened beneath an fd of the root directory in one
 * native call (no check-then-open window, see `openBeneathAsync`), and kept open in a bounded
 * cache like nginx's `open_file_cache`, so a hot path costs no open, fstat or close.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'
import * as util from 'node:util'

import type { SymlinkPolicy } from '../../binding.js'
import { systemError } from '../errors.js'
import { nativeBinding } from '../native.js'
import { type OpenedPath, adoptOpened, statsFromFields } from '../source.js'
import { closeQuietly, openForResponse, refusalFor } from './files.js'
import type { StaticSettings } from './options.js'
import type { Refusal } from './response.js'
import { resolveInside, segmentsBelow } from './target.js'

/** How often the root is resolved again when no cache says otherwise: a redeploy shows within this. */
const ROOT_VALIDITY_MS = 1000

/** A file (or directory) found beneath the root, held until {@link Lease.release}. */
export interface Lease {
  file: OpenedPath
  /** The path's segments below the root, as asked for. */
  names: string[]
  /** A name on its real path below the root starts with a dot. */
  dotted: boolean
  /** Done with the fd: closed now, or when the cache lets go of it. */
  release(): void
}

/** The root directory as last resolved: its real path, and an fd of it for the native opens. */
interface RootDir {
  real: string
  fd: number | undefined
  at: number
  /** Its fd was closed (a newer root replaced it, or the handler closed): resolve again. */
  closed: boolean
}

/** A cached open: an fd shared by every response that leased it, closed when the last lets go after eviction. */
interface Entry {
  file: OpenedPath
  names: string[]
  dotted: boolean
  at: number
  root: RootDir
  users: number
  evicted: boolean
}

const openDirectory = util.promisify(fs.open)

export class StaticFiles {
  private readonly absoluteRoot: string
  private root: Promise<RootDir | null> | undefined
  private rootAt = 0
  private current: RootDir | undefined
  private readonly entries = new Map<string, Entry>()
  private readonly pending = new Map<string, Promise<Entry | Refusal>>()
  /** Paths found missing (404), with when and beneath which root: oldest first, at most `max`. */
  private readonly misses = new Map<string, { at: number; root: RootDir }>()
  private warnedMissingRoot = false
  private closed = false

  constructor(
    root: string,
    private readonly settings: Pick<StaticSettings, 'symlinks' | 'openFileCache'>,
  ) {
    this.absoluteRoot = path.resolve(root)
  }

  /** The longest a cached fd, stat or root is used before it is checked again. */
  private get validMs(): number {
    return this.settings.openFileCache === false ? ROOT_VALIDITY_MS : this.settings.openFileCache.validMs
  }

  /**
   * Opens `names` (the path's segments below the root, none `.` or `..`): a lease on the open
   * file, or the status that answers for it (404 for what is missing, leads out of the root or
   * is neither a regular file nor a directory; 403 for EACCES). Unexpected errors throw (or
   * reject). A cache hit, or a miss remembered, is answered at once rather than as a promise:
   * a hot file costs no turn of the microtask queue either.
   */
  open(names: string[]): Lease | Refusal | Promise<Lease | Refusal> {
    const cache = this.closed ? false : this.settings.openFileCache
    const key = names.join('/')
    if (cache !== false) {
      const entry = this.entries.get(key)
      if (entry !== undefined && performance.now() - entry.at < cache.validMs && entry.root === this.current) {
        // Most recently used last: the Map's order is the eviction order.
        this.entries.delete(key)
        this.entries.set(key, entry)
        return this.lease(entry)
      }
      // A path found missing is not looked for again until validMs has passed, like nginx's
      // open_file_cache_errors: extensions and precompressed variants look for absent files often.
      const missing = this.misses.get(key)
      if (missing !== undefined && performance.now() - missing.at < cache.validMs && missing.root === this.current) return { status: 404 }
      // One open per stale or missing path, shared by every request that waits for it.
      let opening = this.pending.get(key)
      if (opening === undefined) {
        opening = this.openFresh(names).finally(() => this.pending.delete(key))
        this.pending.set(key, opening)
      }
      return opening.then((fresh) => ('status' in fresh ? fresh : this.lease(fresh)))
    }
    return this.openFresh(names).then((fresh) =>
      'status' in fresh ? fresh : { file: fresh.file, names, dotted: fresh.dotted, release: () => closeQuietly(fresh.file) },
    )
  }

  /** Closes every cached fd and the root's; later requests open their files each time. */
  close(): void {
    this.closed = true
    for (const entry of this.entries.values()) this.evict(entry)
    this.entries.clear()
    this.misses.clear()
    if (this.current !== undefined) retire(this.current)
    this.current = undefined
    this.root = undefined
  }

  private lease(entry: Entry): Lease {
    entry.users++
    let released = false
    return {
      file: entry.file,
      names: entry.names,
      dotted: entry.dotted,
      release: () => {
        if (released) return
        released = true
        entry.users--
        if (entry.evicted && entry.users === 0) closeQuietly(entry.file)
      },
    }
  }

  private evict(entry: Entry): void {
    entry.evicted = true
    if (entry.users === 0) closeQuietly(entry.file)
  }

  /** Opens afresh; a regular file goes into the cache (replacing what was there), a directory does not. */
  private async openFresh(names: string[]): Promise<Entry | Refusal> {
    let root = await this.currentRoot()
    // Replaced meanwhile (its fd is closed, the number may be reused): the new one serves.
    while (root?.closed) root = await this.currentRoot()
    if (root === null) return { status: 404 }
    let found: Awaited<ReturnType<typeof openPortably>>
    try {
      found = root.fd === undefined ? await openPortably(root.real, names) : await this.openNatively(root, names)
    } finally {
      // After close(): the root's fd serves this request only.
      if (this.closed && root !== this.current) retire(root)
    }
    const cache = this.settings.openFileCache
    const key = names.join('/')
    if ('status' in found) {
      if (found.status === 404 && cache !== false && !this.closed) {
        this.misses.delete(key)
        this.misses.set(key, { at: performance.now(), root })
        if (this.misses.size > cache.max) this.misses.delete(this.misses.keys().next().value as string)
      }
      return found
    }
    this.misses.delete(key)
    const entry: Entry = { ...found, names, at: performance.now(), root, users: 0, evicted: false }
    if (cache === false || this.closed || !found.file.stats.isFile()) {
      // Not shared: the one lease closes it.
      entry.evicted = true
      return entry
    }
    const previous = this.entries.get(key)
    if (previous !== undefined) {
      this.entries.delete(key)
      this.evict(previous)
    }
    this.entries.set(key, entry)
    if (this.entries.size > cache.max) {
      const [oldestKey, oldest] = this.entries.entries().next().value as [string, Entry]
      this.entries.delete(oldestKey)
      this.evict(oldest)
    }
    return entry
  }

  private async openNatively(root: RootDir, names: string[]): Promise<{ file: OpenedPath; dotted: boolean } | Refusal> {
    const binding = nativeBinding as NonNullable<typeof nativeBinding>
    const file = path.join(root.real, ...names)
    const opened = await binding.openBeneathAsync({
      rootFd: root.fd as number,
      rootReal: root.real,
      names,
      symlinks: this.settings.symlinks as `${SymlinkPolicy}` as SymlinkPolicy,
    })
    if (opened.errno !== undefined && opened.errno !== null) {
      const error = systemError(opened.errno, 'open', { path: file })
      // EXDEV: the path leads out of the root; answered like a missing file, revealing nothing.
      if (error.code === 'EXDEV') return { status: 404 }
      const refusal = refusalFor(error)
      if (refusal === undefined) throw error
      return refusal
    }
    const fd = opened.fd as number
    const stats = statsFromFields(opened.stat as number[])
    if (!stats.isFile() && !stats.isDirectory()) {
      closeFd(fd)
      return { status: 404 }
    }
    return { file: adoptOpened(fd, file, stats), dotted: opened.dotted }
  }

  /**
   * The root as last resolved, resolved again (real path, then an fd of it) once it is
   * `validMs` old; one resolution shared by every request meanwhile. A root switched by an
   * atomic redeploy (`current -> release-2`) is served from its new target from then on; the
   * old fd closes when nothing opens beneath it any more (the native call duplicates it).
   */
  private currentRoot(): Promise<RootDir | null> {
    // After close() nothing stays open between requests: each resolves (and closes) its own.
    if (this.closed) return this.resolveRoot()
    const now = performance.now()
    if (this.root !== undefined && now - this.rootAt < this.validMs) return this.root
    this.rootAt = now
    const resolution = this.resolveRoot().catch((error: unknown) => {
      if (this.root === resolution) this.root = undefined
      throw error
    })
    this.root = resolution
    return resolution
  }

  private async resolveRoot(): Promise<RootDir | null> {
    let real: string
    try {
      real = await fs.promises.realpath(this.absoluteRoot)
    } catch (error) {
      if (refusalFor(error)?.status !== 404) throw error
      this.warnMissingRoot(error)
      return null
    }
    const previous = this.current
    if (previous !== undefined && previous.real === real && !this.closed) {
      previous.at = performance.now()
      return previous
    }
    let fd: number | undefined
    if (nativeBinding !== null) {
      try {
        // O_NOFOLLOW: the real path has no symlink left; one swapped in since is not followed.
        fd = await openDirectory(real, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW)
      } catch (error) {
        if (refusalFor(error)?.status !== 404) throw error
        this.warnMissingRoot(error)
        return null
      }
    }
    const root: RootDir = { real, fd, at: performance.now(), closed: false }
    // After close(), the request that asked closes it.
    if (this.closed) return root
    this.current = root
    if (previous !== undefined) retire(previous)
    return root
  }

  private warnMissingRoot(error: unknown): void {
    if (this.warnedMissingRoot) return
    this.warnedMissingRoot = true
    process.emitWarning(
      `The root of createStaticHandler, ${this.absoluteRoot}, does not exist (${(error as NodeJS.ErrnoException).code}): every request is answered as a missing file until it does.`,
      { type: 'ZeroCopyWarning', code: 'ZEROCOPY_STATIC_ROOT_MISSING' },
    )
  }
}

/**
 * Without the native module: the real path is resolved, checked to lie inside the root, and
 * opened with `O_NOFOLLOW`. A directory on the path swapped for a symlink between the two steps
 * is not caught; Node itself has no `openat2`.
 */
async function openPortably(rootReal: string, names: string[]): Promise<{ file: OpenedPath; dotted: boolean } | Refusal> {
  const real = await resolveInside(rootReal, path.join(rootReal, ...names))
  if (typeof real !== 'string') return real
  const file = await openForResponse(real, { noFollow: true })
  if ('status' in file) return file
  if (!file.stats.isFile() && !file.stats.isDirectory()) {
    closeQuietly(file)
    return { status: 404 }
  }
  return { file, dotted: segmentsBelow(rootReal, real).some((segment) => segment.length > 1 && segment.startsWith('.')) }
}

/** Closes a root's fd; a native open already under way holds its own duplicate. */
function retire(root: RootDir): void {
  root.closed = true
  if (root.fd !== undefined) closeFd(root.fd)
}

function closeFd(fd: number): void {
  try {
    fs.closeSync(fd)
  } catch {
    // A read-only fd: nothing to flush, nothing lost.
  }
}
