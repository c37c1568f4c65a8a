/**
 * Opening what a response is about, through the package's one opener, and the statuses that
 * filesystem errors answer (a missing file is 404, a forbidden one 403).
 */
import * as fs from 'node:fs'

import { type OpenedPath, openPath } from '../source.js'
import type { Refusal } from './response.js'

/** Opening and resolving failures that mean "no such file here". */
const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ELOOP', 'ENAMETOOLONG', 'EISDIR', 'ENXIO'])
const FORBIDDEN = new Set(['EACCES', 'EPERM'])

/** The status an fs error answers (404, 403), or undefined for an unexpected one. */
export function refusalFor(error: unknown): Refusal | undefined {
  const code = (error as NodeJS.ErrnoException).code ?? ''
  if (MISSING.has(code)) return { status: 404 }
  if (FORBIDDEN.has(code)) return { status: 403 }
  return undefined
}

/**
 * Opens a file (or a directory) and fstats it, or says which status answers for it. What is
 * not a regular file or a directory is 404 whatever open(2) said of it: a FIFO opens without
 * waiting for a writer (`nonBlocking`: it is never read here) and its fstat tells; a Unix
 * socket cannot be opened at all (ENXIO) and its stat tells. `noFollow` is for paths already
 * resolved by realpath: a symlink swapped in afterwards is refused (ELOOP → 404). Unexpected
 * errors (EMFILE, EIO) throw.
 */
export async function openForResponse(file: string, { noFollow }: { noFollow: boolean }): Promise<OpenedPath | Refusal> {
  try {
    return await openPath(file, { noFollow, nonBlocking: true })
  } catch (error) {
    const refusal = refusalFor(error) ?? (await notAFile(file, !noFollow))
    if (refusal === undefined) throw error
    return refusal
  }
}

/** 404 when `file` exists but is neither a regular file nor a directory; else undefined. */
async function notAFile(file: string, follow: boolean): Promise<Refusal | undefined> {
  try {
    const stats = follow ? await fs.promises.stat(file) : await fs.promises.lstat(file)
    return stats.isFile() || stats.isDirectory() ? undefined : { status: 404 }
  } catch {
    return undefined
  }
}

export function closeQuietly(file: OpenedPath): void {
  try {
    file.closeSync()
  } catch {
    // Closing a read-only fd has nothing to flush: a failure here loses nothing.
  }
}
