/** Opening, adopting and describing the file a transfer reads from. */
import * as fs from 'node:fs'
import * as util from 'node:util'

import { type SystemError, errnoOf, systemError } from './errors.js'
import { nativeBinding } from './native.js'
import { type FileSource, type FixedRange, isFileHandle, pathOf } from './validate.js'

export interface OpenedFile {
  fd: number
  /** The path, for error messages, when we know it. */
  path?: string
  stats: fs.Stats
  /** Closes the file if this package opened it; a caller's fd or FileHandle is left open. */
  close(): Promise<void>
  closeSync(): void
}

/**
 * Why the kernel cannot send this kind of source, or undefined for a regular file (whether
 * the kernel can read that one, procfs files among them, is the binding's to find out).
 */
export function whyNotSendable(stats: fs.Stats): string | undefined {
  if (stats.isFile()) return undefined
  if (stats.isFIFO()) return 'the source is a pipe'
  if (stats.isCharacterDevice()) return 'the source is a character device'
  if (stats.isSocket()) return 'the source is a socket'
  return 'the source is not a regular file'
}

function isDirectoryError(stats: fs.Stats, syscall: string, file?: string): SystemError | undefined {
  return stats.isDirectory() ? systemError(errnoOf('EISDIR'), syscall, { path: file }) : undefined
}

export function fdOfHandle(handle: fs.promises.FileHandle): number {
  // A closed FileHandle reports fd -1.
  if (handle.fd < 0) throw systemError(errnoOf('EBADF'), 'fstat')
  return handle.fd
}

/** How {@link openPath} opens a path; every open is read-only. */
export interface OpenPathOptions {
  /** `O_NOFOLLOW`: a symlink as the last component fails with `ELOOP`, for a path realpath already resolved. */
  noFollow?: boolean
  /**
   * `O_NONBLOCK`: a FIFO opens at once instead of waiting for a writer. Its reads then never
   * wait either (Node cannot clear the flag again), so this is for callers that never read a
   * FIFO; on a regular file it changes nothing.
   */
  nonBlocking?: boolean
}

/** An fd this package opened on a path, which it knows. */
export interface OpenedPath extends OpenedFile {
  path: string
}

function openFlags({ noFollow = false, nonBlocking = false }: OpenPathOptions): number {
  let flags = fs.constants.O_RDONLY
  if (noFollow) flags |= fs.constants.O_NOFOLLOW ?? 0
  if (nonBlocking) flags |= fs.constants.O_NONBLOCK ?? 0
  return flags
}

/**
 * The one way this package opens a path: read-only, then fstat. Whatever the path names is
 * returned, a directory too: the caller judges what it may read. The fstat and the close of a
 * read-only fd run on this thread: neither touches the disk, and each trip through the
 * threadpool costs a wake-up of the event loop per transfer.
 */
export async function openPath(file: string, options: OpenPathOptions = {}): Promise<OpenedPath> {
  if (nativeBinding !== null) {
    // open + fstat in one threadpool job, the fstat off the event loop.
    const opened = await nativeBinding.openPathAsync(file, options.noFollow === true, options.nonBlocking === true)
    if (opened.errno !== undefined && opened.errno !== null) throw systemError(opened.errno, 'open', { path: file })
    return adoptOpened(opened.fd as number, file, statsFromFields(opened.stat as number[]))
  }
  // A raw fd, not a FileHandle: ours to close synchronously, with no handle left to close it again on GC.
  return describeOpened(await util.promisify(fs.open)(file, openFlags(options)), file)
}

/** An fd this package opened on `file` and fstat'ed: closed by the caller of this. */
export function adoptOpened(fd: number, file: string, stats: fs.Stats): OpenedPath {
  const close = () => fs.closeSync(fd)
  return { fd, path: file, stats, close: async () => close(), closeSync: close }
}

/** Opens (a path) or adopts (an fd or FileHandle) the source and fstats it. */
export async function openSource(source: FileSource): Promise<OpenedFile> {
  if (typeof source === 'number' || isFileHandle(source)) return adoptSource(typeof source === 'number' ? source : fdOfHandle(source))
  // Blocking: a FIFO source is read, and its reads must wait for its writer.
  return notADirectory(await openPath(pathOf(source)))
}

export function openSourceSync(source: FileSource): OpenedFile {
  if (typeof source === 'number') return adoptSource(source)
  const file = pathOf(source as string | URL)
  return notADirectory(describeOpened(fs.openSync(file, openFlags({})), file))
}

/** A caller's fd: described, never closed. */
function adoptSource(fd: number): OpenedFile {
  const stats = fs.fstatSync(fd)
  const directory = isDirectoryError(stats, 'read')
  if (directory) throw directory
  return { fd, stats, close: async () => {}, closeSync: () => {} }
}

/** An fd this package opened on `file`: described, and closed by the caller of this. */
function describeOpened(fd: number, file: string): OpenedPath {
  try {
    return adoptOpened(fd, file, fs.fstatSync(fd))
  } catch (error) {
    fs.closeSync(fd)
    throw error
  }
}

/** `file`, unless it is a directory: then closed, and EISDIR as reading it would fail. */
function notADirectory(file: OpenedPath): OpenedPath {
  const directory = isDirectoryError(file.stats, 'read', file.path)
  if (directory === undefined) return file
  file.closeSync()
  throw directory
}

/**
 * An `fs.Stats` from the binding's fstat fields (see `OpenedFile.stat`): the same class, methods
 * and numbers `fs.fstat` gives, dates included; `birthtime` is not known (the epoch, as Node
 * reports it where the filesystem keeps none).
 */
export function statsFromFields(fields: number[]): fs.Stats {
  const [dev, ino, mode, nlink, uid, gid, rdev, size, blksize, blocks, atimeS, atimeNs, mtimeS, mtimeNs, ctimeS, ctimeNs] = fields
  const atimeMs = atimeS * 1000 + atimeNs / 1e6
  const mtimeMs = mtimeS * 1000 + mtimeNs / 1e6
  const ctimeMs = ctimeS * 1000 + ctimeNs / 1e6
  const values: Record<string, unknown> = {
    dev,
    mode,
    nlink,
    uid,
    gid,
    rdev,
    blksize,
    ino,
    size,
    blocks,
    atimeMs,
    mtimeMs,
    ctimeMs,
    birthtimeMs: 0,
    // Rounded to the millisecond, as Node builds its Dates.
    atime: new Date(Math.round(atimeMs)),
    mtime: new Date(Math.round(mtimeMs)),
    ctime: new Date(Math.round(ctimeMs)),
    birthtime: new Date(0),
  }
  // Own data properties on an fs.Stats: `new fs.Stats()` is deprecated, and Node versions differ
  // in whether the dates are plain fields or lazy accessors on the prototype.
  const stats = Object.create(fs.Stats.prototype) as fs.Stats
  for (const [name, value] of Object.entries(values)) Object.defineProperty(stats, name, { value, writable: true, enumerable: true, configurable: true })
  return stats
}

/** The bytes a range of this file holds now, or -1 when its size cannot be known in advance. */
export function rangeTotal(stats: fs.Stats, range: FixedRange): number {
  if (range.length === 0) return 0
  if (!stats.isFile() || stats.size === 0) return -1
  const available = Math.max(0, stats.size - range.offset)
  return range.length === undefined ? available : Math.min(range.length, available)
}

/**
 * The count to ask the binding for: the exact range when the size is known (a file that grows
 * meanwhile sends no more), else up to end of file (or the requested length).
 */
export function nativeCount(total: number, range: FixedRange): number | undefined {
  return total >= 0 ? total : range.length
}
