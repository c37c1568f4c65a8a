/** copyFile and copyFileSync: file to file inside the kernel. */
import * as fs from 'node:fs'

import type * as Binding from '../binding.js'
import { abortError, codedError } from './errors.js'
import { NativeRun, type TransferHooks, bytesOf, nativeBinding, warnNotZeroCopy } from './native.js'
import {
  type FileSource,
  type FixedRange,
  MAX_POSITION,
  isFileHandle,
  pathOf,
  validateCallback,
  validateFileSource,
  validateInteger,
  validateOptionsObject,
  validateRange,
  validateSignal,
} from './validate.js'
import { newReport, reporting, reportingSync } from './report.js'
import type { CopyFileOptions, CopyFileSyncOptions } from './options.js'
import { type OpenedFile, fdOfHandle, nativeCount, openSource, openSourceSync, rangeTotal } from './source.js'
import { pumpSync, streamRange, writeAllToFd } from './stream-fallback.js'

interface CopyJob {
  range: FixedRange
  destinationOffset: number
  exclusive: boolean
}

const COPYFILE_MODES = fs.constants.COPYFILE_EXCL | fs.constants.COPYFILE_FICLONE | fs.constants.COPYFILE_FICLONE_FORCE

function validateCopyOptions(
  source: unknown,
  destination: unknown,
  options: unknown,
  allowHandle: boolean,
): { source: FileSource; destination: FileSource; job: CopyJob; opts: Record<string, unknown> } {
  const validSource = validateFileSource(source, 'source', allowHandle)
  const validDestination = validateFileSource(destination, 'destination', allowHandle)
  const opts = validateOptionsObject(options)
  const mode = opts.mode === undefined ? 0 : validateInteger(opts.mode, 'options.mode', COPYFILE_MODES)
  if (mode & fs.constants.COPYFILE_FICLONE_FORCE) {
    // A forced clone needs the FICLONE ioctl, which fs.copyFile has and this package does not.
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', 'options.mode COPYFILE_FICLONE_FORCE is not supported: use fs.copyFile for a forced reflink')
  }
  return {
    source: validSource,
    destination: validDestination,
    opts,
    job: {
      range: validateRange(opts),
      destinationOffset: opts.destinationOffset === undefined ? 0 : validateInteger(opts.destinationOffset, 'options.destinationOffset', MAX_POSITION),
      exclusive: (mode & fs.constants.COPYFILE_EXCL) !== 0,
    },
  }
}

interface OpenedDestination {
  fd: number
  path?: string
  /** Whether this package opened the file, so its position is ours to move (sendfile writes at the position). */
  ownsPosition: boolean
  close(): Promise<void>
  closeSync(): void
}

/**
 * Open flags for a path destination: created if missing (or, exclusive, only if missing), but
 * never `O_TRUNC`. Between a check of the path and an open that truncates, the path can become
 * a link to the source (another process renaming in a shared directory), and the source would
 * be cut to nothing. So, as libuv's `uv_fs_copyfile` does, the opened file is compared with the
 * source by device and inode first, and only a different file is truncated, through its fd.
 */
function destinationFlags(job: CopyJob): number {
  const { O_WRONLY, O_CREAT, O_EXCL } = fs.constants
  return O_WRONLY | O_CREAT | (job.exclusive ? O_EXCL : 0)
}

/** Whether the opened destination is the source itself: then nothing may be truncated. */
function isSourceItself(destination: fs.Stats, source: fs.Stats): boolean {
  return destination.dev === source.dev && destination.ino === source.ino
}

function adoptedDestination(fd: number): OpenedDestination {
  return { fd, ownsPosition: false, close: async () => {}, closeSync: () => {} }
}

async function openDestination(destination: FileSource, source: OpenedFile, job: CopyJob): Promise<OpenedDestination> {
  if (typeof destination === 'number') return adoptedDestination(destination)
  if (isFileHandle(destination)) return adoptedDestination(fdOfHandle(destination))
  const file = pathOf(destination)
  const permissions = source.stats.mode & 0o7777
  const handle = await fs.promises.open(file, destinationFlags(job), permissions)
  try {
    if (!isSourceItself(await handle.stat(), source.stats)) await handle.truncate(0)
    setPermissions(handle.fd, permissions)
  } catch (error) {
    await handle.close()
    throw error
  }
  return { fd: handle.fd, path: file, ownsPosition: true, close: () => handle.close(), closeSync: () => fs.closeSync(handle.fd) }
}

function openDestinationSync(destination: FileSource, source: OpenedFile, job: CopyJob): OpenedDestination {
  if (typeof destination === 'number') return adoptedDestination(destination)
  const file = pathOf(destination as string | URL)
  const permissions = source.stats.mode & 0o7777
  const fd = fs.openSync(file, destinationFlags(job), permissions)
  try {
    if (!isSourceItself(fs.fstatSync(fd), source.stats)) fs.ftruncateSync(fd, 0)
    setPermissions(fd, permissions)
  } catch (error) {
    fs.closeSync(fd)
    throw error
  }
  return { fd, path: file, ownsPosition: true, close: async () => fs.closeSync(fd), closeSync: () => fs.closeSync(fd) }
}

/** Like fs.copyFile, the copy gets the source's permissions, whatever the umask. */
function setPermissions(fd: number, permissions: number): void {
  try {
    fs.fchmodSync(fd, permissions)
  } catch {
    // Some filesystems refuse chmod; the copy itself is still good.
  }
}

function isPath(value: FileSource): value is string | URL {
  return typeof value === 'string' || value instanceof URL
}

/** What the binding needs for one copy between two paths. */
function pathCopyRequest(source: string | URL, destination: string | URL, job: CopyJob): Binding.PathCopyRequest {
  return {
    source: pathOf(source),
    destination: pathOf(destination),
    exclusive: job.exclusive,
    sourceOffset: job.range.offset,
    destinationOffset: job.destinationOffset,
    count: job.range.length,
  }
}

/** What the binding needs for one copy between open files. */
function copyRequest(file: OpenedFile, out: OpenedDestination, job: CopyJob, total: number): Binding.CopyRequest {
  return {
    destinationFd: out.fd,
    sourceFd: file.fd,
    sourceOffset: job.range.offset,
    destinationOffset: job.destinationOffset,
    count: nativeCount(total, job.range),
    mayMoveDestinationPosition: out.ownsPosition,
  }
}

/**
 * Copies a file (or a range of it) into another file inside the kernel and resolves with the
 * bytes copied: `copy_file_range(2)` (which reflinks on btrfs/XFS), then `sendfile(2)`, then
 * `read`/`write` across filesystems that refuse both.
 *
 * - A path destination is created or truncated like `fs.copyFile`, with the source's
 *   permissions; `mode: fs.constants.COPYFILE_EXCL` fails with `EEXIST` if it exists.
 * - An fd or FileHandle destination is written at `destinationOffset` (default 0), not
 *   truncated, and its file position does not move; neither does a source fd's.
 * - Copying a file onto itself never truncates it: the same range is a no-op, overlapping
 *   ranges fail with `EINVAL`.
 *
 * @example
 * ```ts
 * await copyFile('video.mp4', 'backup.mp4', { onProgress: (copied, total) => bar.update(copied / total) })
 * await copyFile(handle, out, { offset: 1024, length: 4096, destinationOffset: 0 })
 * ```
 */
export function copyFile(
  source: string | URL | fs.promises.FileHandle | number,
  destination: string | URL | fs.promises.FileHandle | number,
  options?: CopyFileOptions,
): Promise<number> {
  let validated: ReturnType<typeof validateCopyOptions>
  let hooks: Omit<TransferHooks, 'total'>
  try {
    validated = validateCopyOptions(source, destination, options, true)
    hooks = { signal: validateSignal(validated.opts.signal), onProgress: validateCallback(validated.opts.onProgress, 'options.onProgress') }
    if (hooks.signal?.aborted) throw abortError(hooks.signal)
  } catch (error) {
    return Promise.reject(error)
  }
  const { job } = validated
  const report = newReport('copyFile', validated.destination)
  const { source: from, destination: to } = validated
  if (nativeBinding !== null && isPath(from) && isPath(to)) {
    // Paths on both sides: one native job opens, copies and closes, as fs.copyFile does.
    const native = nativeBinding
    const request = pathCopyRequest(from, to, job)
    return reporting(report, async () => {
      const result = await new NativeRun(native, { ...hooks, total: -1 }).run(
        (control, onProgress) => native.copyPathAsync(request, control, onProgress),
        'copyfile',
        { path: request.source, dest: request.destination },
      )
      report.method = result.method
      return (report.bytes = result.bytes)
    })
  }
  return reporting(report, async () => {
    const file = await openSource(validated.source)
    try {
      if (hooks.signal?.aborted) throw abortError(hooks.signal)
      const out = await openDestination(validated.destination, file, job)
      try {
        const total = rangeTotal(file.stats, job.range)
        const allHooks: TransferHooks = { ...hooks, total }
        if (total === 0) return 0
        if (nativeBinding === null) {
          warnNotZeroCopy()
          report.method = 'stream'
          report.reason = 'the native binding is not loaded'
          let at = job.destinationOffset
          return (report.bytes = await streamRange(file, job.range, allHooks, async (chunk) => {
            await writeAllToFd(out.fd, chunk, { position: at })
            at += chunk.length
          }))
        }
        const native = nativeBinding
        const request = copyRequest(file, out, job, total)
        const result = await new NativeRun(native, allHooks).run((control, onProgress) => native.copyRangeAsync(request, control, onProgress), 'copyfile', {
          path: file.path,
          dest: out.path,
        })
        report.method = result.method
        return (report.bytes = result.bytes)
      } finally {
        await out.close()
      }
    } finally {
      await file.close()
    }
  })
}

/**
 * The synchronous {@link copyFile}: same methods and rules, on the calling thread, without
 * abort or progress.
 *
 * @example
 * ```ts
 * const copied = copyFileSync('config.json', 'config.json.bak', { mode: fs.constants.COPYFILE_EXCL })
 * ```
 */
export function copyFileSync(source: string | URL | number, destination: string | URL | number, options?: CopyFileSyncOptions): number {
  const validated = validateCopyOptions(source, destination, options, false)
  const { job } = validated
  const report = newReport('copyFileSync', validated.destination)
  const { source: from, destination: to } = validated
  if (nativeBinding !== null && isPath(from) && isPath(to)) {
    const request = pathCopyRequest(from, to, job)
    const native = nativeBinding
    return reportingSync(report, () => {
      const outcome = native.copyPathSync(request)
      report.method = outcome.method
      return (report.bytes = bytesOf(outcome, 'copyfile', { path: request.source, dest: request.destination }))
    })
  }
  return reportingSync(report, () => {
    const file = openSourceSync(validated.source)
    try {
      const out = openDestinationSync(validated.destination, file, job)
      try {
        const total = rangeTotal(file.stats, job.range)
        if (total === 0) return 0
        if (nativeBinding === null) {
          warnNotZeroCopy()
          report.method = 'stream'
          report.reason = 'the native binding is not loaded'
          return (report.bytes = pumpSync(file.fd, job.range, (chunk, copied) => {
            let written = 0
            while (written < chunk.length) written += fs.writeSync(out.fd, chunk, written, chunk.length - written, job.destinationOffset + copied + written)
            return written
          }))
        }
        const outcome = nativeBinding.copyRangeSync(copyRequest(file, out, job, total))
        report.method = outcome.method
        return (report.bytes = bytesOf(outcome, 'copyfile', { path: file.path, dest: out.path }))
      } finally {
        out.closeSync()
      }
    } finally {
      file.closeSync()
    }
  })
}
