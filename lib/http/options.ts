/** The options of serveFile and createStaticHandler, validated once into settings. */
import type * as fs from 'node:fs'
import * as http from 'node:http'
import type * as http2 from 'node:http2'

import { invalidArgType, invalidArgValue, outOfRange } from '../errors.js'
import {
  validateBoolean,
  validateCallback,
  validateFiniteNumber,
  validateInteger,
  validateOneOf,
  validateOptionsObject,
  validateSignal,
  validateString,
} from '../validate.js'
import type { EtagKind } from './conditionals.js'
import { ENCODINGS, type Encoding } from './encoding.js'
import { DEFAULT_MAX_RANGES } from './ranges.js'
import type { Headers } from './response.js'

/** {@link ServeFileOptions.setHeaders}: sets headers on a file response before they go out. */
export type SetHeaders = (res: http.ServerResponse | http2.Http2ServerResponse, path: string, stats: fs.Stats) => void

/** Options of {@link serveFile} (and of every file {@link createStaticHandler} serves). */
export interface ServeFileOptions {
  /** `max-age` of the `Cache-Control` header, in seconds. Default 0 (caches must revalidate). */
  maxAge?: number
  /** Adds `immutable` to `Cache-Control`: for fingerprinted file names that never change. Default false. */
  immutable?: boolean
  /** Sends `Cache-Control: public, max-age=…`. Default true. */
  cacheControl?: boolean
  /** Sends `Last-Modified` and honours the date preconditions. Default true. */
  lastModified?: boolean
  /**
   * The `ETag` sent, and honoured in `If-Match`, `If-None-Match` and `If-Range`. `'strong'`:
   * `"<inode>-<size>-<mtime µs>"` (hex), so `If-Range` and `If-Match`, which compare strongly,
   * hold for the tag a client got; `'weak'`: `W/"<size>-<mtime ms>"`, which only `If-None-Match`
   * can match (a range request with it as `If-Range` gets the whole file); false: none. `true`
   * is `'strong'`. Default `'strong'`.
   */
  etag?: boolean | 'strong' | 'weak'
  /** Sends `Accept-Ranges: bytes` and honours `Range`. False: `Accept-Ranges: none`, `Range` ignored. Default true. */
  acceptRanges?: boolean
  /**
   * Most ranges one request may ask for: more are answered with the whole file (200), as are
   * ranges that overlap more than once. Several ranges answer `206` with a
   * `multipart/byteranges` body; 1 allows single ranges only. Default 32.
   */
  maxRanges?: number
  /**
   * Serves `file.br`, `file.zst` or `file.gz` from beside the file when it exists and the
   * request's `Accept-Encoding` takes it (q-values honoured; `q=0` refuses), with
   * `Content-Encoding`, the file's own `Content-Type`, and the variant's own `ETag`,
   * `Content-Length` and ranges. Every response for a file with a variant carries
   * `Vary: Accept-Encoding`. `true` is `['br', 'zstd', 'gzip']`; a list says which, in the
   * order of preference when the client weighs them equally. Default false.
   */
  precompressed?: boolean | Array<'br' | 'zstd' | 'gzip'>
  /**
   * Called with the response, the file's path and its `fs.Stats` before the headers of every
   * 200, 206 or HEAD file response (not 304, 412 or 416) are set; the headers it sets win over
   * the computed ones (keep `Content-Length` and `Content-Range`: they frame the body). With
   * `precompressed`, `path` and `stats` are those of the file asked for, not of the variant sent.
   * It may throw: the response has not started, and the promise (or `next`) gets the error.
   */
  setHeaders?: SetHeaders
  /**
   * `Content-Type` of the file. Default: a `Content-Type` already set on the response, else
   * the type of the file's extension (with `charset=utf-8` for text), else `application/octet-stream`.
   */
  contentType?: string
  /**
   * Extra headers for 200, 206 and 304 responses (they override the computed ones). Names and
   * values are checked up front as `setHeader` checks them (`ERR_INVALID_HTTP_TOKEN`,
   * `ERR_INVALID_CHAR`), so a bad one fails the call, not a response.
   */
  headers?: Record<string, string | number | string[]>
  /**
   * Aborts the response: before the headers the promise rejects and nothing is written; during
   * the body the connection (HTTP/2: the stream) is destroyed, so the client cannot take a short
   * body for a whole one.
   */
  signal?: AbortSignal
  /**
   * Offers the file as a download: `Content-Disposition: attachment` with the file's base name
   * (`true`) or this name, in an ASCII `filename` and, when the name is not plain ASCII, an
   * RFC 8187 `filename*`. Default false.
   */
  download?: boolean | string
}

/** Options of {@link createStaticHandler}: those of {@link serveFile} but `download`. */
export interface StaticOptions extends Omit<ServeFileOptions, 'download'> {
  /**
   * File served for a directory URL (`/docs/` → `/docs/index.html`); a list: the first of them
   * that exists; false (or `[]`): directories are 404. Default `'index.html'`.
   */
  index?: string | string[] | false
  /**
   * Extensions tried, in order, when the path names nothing: `['html']` serves `about.html` for
   * `/about`. Written without the dot. Default none.
   */
  extensions?: string[]
  /**
   * Symbolic links met while resolving a path below `root`: `'inside'` follows them only while
   * they resolve inside `root` (a link that leads out is 404); `'deny'` follows none (404);
   * `'follow'` follows any, even out of `root` (for deployments whose tree is symlinked in from
   * elsewhere). `root` itself may be a symlink in every mode. Default `'inside'`.
   */
  symlinks?: 'inside' | 'deny' | 'follow'
  /**
   * Keeps recently served files open, like nginx's `open_file_cache`: a hot path is answered
   * from a cached fd and stat without any open, fstat or close. An entry older than `validMs`
   * is checked again by path before use, so a file replaced, deleted or changed in place is
   * served as it now is at most `validMs` after the change. At most `max` fds are held (least
   * recently used closed first); `handler.close()` closes them all. False: every request opens
   * the file. Default `{ max: 1000, validMs: 1000 }`.
   */
  openFileCache?: { max?: number; validMs?: number } | false
  /**
   * Paths with a segment that starts with a dot (`/.env`, `/.git/config`): `'ignore'` treats
   * them as missing (404), `'deny'` answers 403, `'allow'` serves them. Default `'ignore'`.
   * Judged on the URL and on the real path of what would be opened, relative to the real root:
   * a symlink `env -> .env` is a dotfile too.
   */
  dotfiles?: 'ignore' | 'allow' | 'deny'
  /**
   * As middleware (a `next` is given): misses (404) and methods other than GET and HEAD (405)
   * call `next()` so later handlers can answer. False: they are answered here. Default true.
   */
  fallthrough?: boolean
}

/**
 * A connect/Express-style request handler; `next` is optional, so it is a `node:http` (or
 * `node:http2` compatibility API) request listener too.
 */
export interface StaticHandler {
  (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse, next?: (err?: unknown) => void): void
  /**
   * Closes the fds the open-file cache holds (and the root directory's). Responses in flight
   * finish with the fds they hold; requests after `close()` are answered as before, without the
   * cache. Idempotent.
   */
  close(): void
}

/** What every file response needs of the options, checked. */
export interface FileSettings {
  cacheControl: string | undefined
  lastModified: boolean
  etag: EtagKind
  acceptRanges: boolean
  maxRanges: number
  /** The encodings of the variants to look for, in the order of preference; empty: none. */
  precompressed: Encoding[]
  setHeaders: SetHeaders | undefined
  contentType: string | undefined
  headers: Headers
  signal: AbortSignal | undefined
}

export interface StaticSettings extends FileSettings {
  /** The index file names, in order; empty: directories are 404. */
  index: string[]
  /** The extensions to try, each with its dot (`.html`). */
  extensions: string[]
  symlinks: 'inside' | 'deny' | 'follow'
  openFileCache: { max: number; validMs: number } | false
  dotfiles: 'ignore' | 'allow' | 'deny'
  fallthrough: boolean
}

const DOTFILES = ['ignore', 'allow', 'deny'] as const
const SYMLINKS = ['inside', 'deny', 'follow'] as const
const DEFAULT_OPEN_FILE_CACHE = { max: 1000, validMs: 1000 }

export interface ServeFileSettings extends FileSettings {
  download: boolean | string
}

/** The options of serveFile, checked; `null` counts as no options, as it always has here. */
export function fileSettings(value: unknown): ServeFileSettings {
  const options = validateOptionsObject(value ?? undefined)
  return { ...settingsFrom(options), download: validDownload(options.download) }
}

function validDownload(value: unknown): boolean | string {
  if (value === undefined || typeof value === 'boolean') return value ?? false
  if (typeof value !== 'string') throw invalidArgType('options.download', 'a boolean or a file name', value)
  if (value === '' || value.includes('\0')) throw invalidArgValue('options.download', value, 'must be a non-empty file name without null bytes')
  return value
}

function validEtag(value: unknown): EtagKind {
  if (value === undefined || value === true) return 'strong'
  if (value === false || value === 'strong' || value === 'weak') return value
  if (typeof value !== 'string') throw invalidArgType('options.etag', "'strong', 'weak' or a boolean", value)
  return validateOneOf(value, 'options.etag', ['strong', 'weak'] as const)
}

function validPrecompressed(value: unknown): Encoding[] {
  if (value === undefined || value === false) return []
  if (value === true) return [...ENCODINGS]
  if (!Array.isArray(value)) throw invalidArgType('options.precompressed', "a boolean or an array of 'br', 'zstd' and 'gzip'", value)
  const encodings = value.map((encoding, at) => validateOneOf(encoding, `options.precompressed[${at}]`, ENCODINGS))
  return [...new Set(encodings)]
}

function settingsFrom(options: Record<string, unknown>): FileSettings {
  const maxAge = options.maxAge === undefined ? 0 : validateFiniteNumber(options.maxAge, 'options.maxAge', 0)
  const contentType = options.contentType === undefined ? undefined : validateString(options.contentType, 'options.contentType')
  if (contentType !== undefined) http.validateHeaderValue('Content-Type', contentType)
  const signal = validateSignal(options.signal)
  const immutable = validateBoolean(options.immutable, 'options.immutable', false)
  return {
    cacheControl: validateBoolean(options.cacheControl, 'options.cacheControl', true)
      ? `public, max-age=${Math.floor(maxAge)}${immutable ? ', immutable' : ''}`
      : undefined,
    lastModified: validateBoolean(options.lastModified, 'options.lastModified', true),
    etag: validEtag(options.etag),
    acceptRanges: validateBoolean(options.acceptRanges, 'options.acceptRanges', true),
    maxRanges: options.maxRanges === undefined ? DEFAULT_MAX_RANGES : validMaxRanges(options.maxRanges),
    precompressed: validPrecompressed(options.precompressed),
    setHeaders: validateCallback<SetHeaders>(options.setHeaders, 'options.setHeaders'),
    contentType,
    headers: options.headers === undefined ? {} : validHeaders(options.headers),
    signal,
  }
}

/** The options of createStaticHandler, checked. */
export function staticSettings(value: unknown): StaticSettings {
  const options = validateOptionsObject(value ?? undefined)
  const settings = settingsFrom(options)
  const fallthrough = validateBoolean(options.fallthrough, 'options.fallthrough', true)
  return {
    ...settings,
    index: options.index === undefined ? ['index.html'] : validIndex(options.index),
    extensions: options.extensions === undefined ? [] : validExtensions(options.extensions),
    symlinks: options.symlinks === undefined ? 'inside' : validateOneOf(options.symlinks, 'options.symlinks', SYMLINKS),
    openFileCache: validOpenFileCache(options.openFileCache),
    dotfiles: options.dotfiles === undefined ? 'ignore' : validateOneOf(options.dotfiles, 'options.dotfiles', DOTFILES),
    fallthrough,
  }
}

/** The index names: each a name inside the directory (no separator or NUL, not `.` or `..`). */
function validIndex(index: unknown): string[] {
  if (index === false) return []
  if (typeof index === 'string') return [validIndexName(index, 'options.index')]
  if (!Array.isArray(index)) throw invalidArgType('options.index', 'a file name, an array of file names or false', index)
  return index.map((name, at) => validIndexName(name, `options.index[${at}]`))
}

function validIndexName(name: unknown, label: string): string {
  if (typeof name !== 'string') throw invalidArgType(label, 'a file name', name)
  if (name === '' || /[\\/\0]/.test(name) || name === '.' || name === '..')
    throw invalidArgValue(label, name, "must be a file name in the directory (no '/', '\\' or null byte, not '.' or '..')")
  return name
}

/** Extensions as `.html`: written without the dot, no separator, NUL or further dot-only name. */
function validExtensions(extensions: unknown): string[] {
  if (!Array.isArray(extensions)) throw invalidArgType('options.extensions', 'an array of strings', extensions)
  return extensions.map((extension, at) => {
    const label = `options.extensions[${at}]`
    if (typeof extension !== 'string') throw invalidArgType(label, 'a string', extension)
    if (extension === '' || extension.startsWith('.') || /[\\/\0]/.test(extension))
      throw invalidArgValue(label, extension, "must be an extension without its dot (such as 'html'), with no '/', '\\' or null byte")
    return `.${extension}`
  })
}

/** At least one range (1: no multipart); at most 1000, far past what any client asks. */
function validMaxRanges(value: unknown): number {
  const max = validateInteger(value, 'options.maxRanges', 1000)
  if (max === 0) throw outOfRange('options.maxRanges', '>= 1 && <= 1000', max)
  return max
}

/** At least one entry (`false` turns the cache off); at most a million fds. */
function validCacheSize(value: unknown): number {
  const max = validateInteger(value, 'options.openFileCache.max', 1 << 20)
  if (max === 0) throw outOfRange('options.openFileCache.max', '>= 1 && <= 1048576', max)
  return max
}

function validOpenFileCache(value: unknown): StaticSettings['openFileCache'] {
  if (value === undefined || value === true) return DEFAULT_OPEN_FILE_CACHE
  if (value === false) return false
  const options = validateOptionsObject(value, 'options.openFileCache')
  return {
    max: options.max === undefined ? DEFAULT_OPEN_FILE_CACHE.max : validCacheSize(options.max),
    validMs: options.validMs === undefined ? DEFAULT_OPEN_FILE_CACHE.validMs : validateInteger(options.validMs, 'options.openFileCache.validMs', 86_400_000),
  }
}

/** A copy of the `headers` option, each name and value checked as `setHeader` checks them. */
function validHeaders(headers: unknown): Headers {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw invalidArgType('options.headers', 'of type object', headers)
  const valid: Headers = {}
  for (const [name, value] of Object.entries(headers)) {
    http.validateHeaderName(name)
    if (Array.isArray(value)) {
      for (const item of value) {
        if (typeof item !== 'string') throw invalidArgType(`options.headers['${name}']`, 'a string, a number or an array of strings', value)
        http.validateHeaderValue(name, item)
      }
      valid[name] = [...value]
    } else {
      if (typeof value !== 'string' && typeof value !== 'number')
        throw invalidArgType(`options.headers['${name}']`, 'a string, a number or an array of strings', value)
      // As text: Node takes some headers (Content-Disposition) as strings only, and throws in writeHead otherwise.
      valid[name] = String(value)
      http.validateHeaderValue(name, valid[name] as string)
    }
  }
  return valid
}
