/**
 * From a request target to a path under the root: the URL path decoded and checked (`..`,
 * dotfiles, NUL); and, for the portable opener (no native module), the real path of what it
 * names kept inside the real root.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import { refusalFor } from './files.js'
import type { Refusal } from './response.js'

/** A request target's path, decoded and checked, not yet joined under a root. */
export interface Target {
  /** Every segment of the decoded path, split at `/` and `\`, for the dotfile policy. */
  segments: string[]
  /** The segments that name something, to join under the root. */
  relative: string[]
  /** The path ends with a separator: only a directory answers it. */
  wantsDirectory: boolean
}

/** The path of a request target (origin-form or absolute-form), without query or fragment; undefined if it has none. */
export function targetPath(url: string | undefined): string | undefined {
  if (url === undefined) return undefined
  const end = url.search(/[?#]/)
  let pathname = end === -1 ? url : url.slice(0, end)
  if (!pathname.startsWith('/')) {
    // A proxy-style request: http://host/path.
    const authority = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(pathname)
    if (authority === null) return undefined
    pathname = pathname.slice(authority[0].length) || '/'
  }
  return pathname
}

/**
 * The target of a request URL, percent-decoded once; 400 for no path, a malformed encoding or
 * a NUL byte, 403 for a `..` segment however it was written.
 */
export function parseTarget(url: string | undefined): Target | Refusal {
  const rawPath = targetPath(url)
  if (rawPath === undefined) return { status: 400 }
  let decoded: string
  try {
    decoded = decodeURIComponent(rawPath)
  } catch {
    return { status: 400 }
  }
  if (decoded.includes('\0')) return { status: 400 }
  // Both separators: a backslash is a separator on Windows and a trap everywhere.
  const segments = decoded.split(/[\\/]/)
  if (segments.includes('..')) return { status: 403 }
  return {
    segments,
    relative: segments.filter((segment) => segment !== '' && segment !== '.'),
    wantsDirectory: decoded.endsWith('/') || decoded.endsWith('\\'),
  }
}

/** `.env`, `.git`: a segment that starts with a dot (`.` and `..` are not names). */
export function hasDotSegment(segments: string[]): boolean {
  return segments.some((segment) => segment.length > 1 && segment.startsWith('.'))
}

/** The segments of `real` below `rootPath`, for the dotfile policy on what would be opened. */
export function segmentsBelow(rootPath: string, real: string): string[] {
  return path.relative(rootPath, real).split(path.sep)
}

function isInside(root: string, file: string): boolean {
  return file === root || file.startsWith(root.endsWith(path.sep) ? root : root + path.sep)
}

/** The real path of `file` when it exists inside `rootPath` (a real path), else the refusal for it. */
export async function resolveInside(rootPath: string, file: string): Promise<string | Refusal> {
  let real: string
  try {
    real = await fs.promises.realpath(file)
  } catch (error) {
    const refusal = refusalFor(error)
    if (refusal === undefined) throw error
    return refusal
  }
  // Outside root (a symlink out of it): answered like a missing file, revealing nothing.
  return isInside(rootPath, real) ? real : { status: 404 }
}

/**
 * Where `/dir` redirects: `/dir/` with the query, so relative links in its index resolve inside
 * it. `url` is the URL the client asked for (Express's `originalUrl` under a mount point).
 */
export function directoryLocation(url: string): string {
  const end = url.search(/[?#]/)
  const pathname = targetPath(url) ?? '/'
  const query = end === -1 ? '' : url.slice(end).split('#')[0]
  // Leading slashes collapsed: '//evil.example/' would be a protocol-relative redirect.
  return `${pathname.replace(/^[\\/]+/, '/')}/${query}`
}
