/**
 * Conditional requests (RFC 9110 §8.8, §13): the validators of a file and the preconditions
 * and `If-Range` judged against them. Pure functions of header values and file metadata.
 */

/** What a response says of the file's version; undefined for a validator it does not send. */
export interface Validators {
  etag: string | undefined
  /** Last-Modified in ms, truncated to whole seconds as the header carries it. */
  modified: number | undefined
}

/** The precondition headers of a request, as `req.headers` holds them (lower-case names). */
export interface ConditionalHeaders {
  'if-match'?: string
  'if-none-match'?: string
  'if-modified-since'?: string
  'if-unmodified-since'?: string
}

/** Which ETag a response carries: see `ServeFileOptions.etag`. */
export type EtagKind = 'strong' | 'weak' | false

/** What a validator is made of: `fs.Stats` has every field. */
export interface FileVersion {
  size: number
  mtimeMs: number
  ino: number
}

/** A weak tag from size and mtime: cheap (no read of the file), and any write changes it. */
export function weakEtag(size: number, mtimeMs: number): string {
  return `W/"${size.toString(16)}-${Math.floor(mtimeMs).toString(16)}"`
}

/**
 * A strong tag from inode, size and mtime, as nginx's (size and mtime) and Apache's (with the
 * inode) are: cheap (no read of the file), and a write, a replacement (a new inode) or a touch
 * changes it. The mtime is taken to the microsecond, the precision `fs.Stats.mtimeMs` keeps of
 * the kernel's nanoseconds (a double holds about 0.25 µs at today's dates).
 */
export function strongEtag({ size, mtimeMs, ino }: FileVersion): string {
  return `"${ino.toString(16)}-${size.toString(16)}-${Math.round(mtimeMs * 1000).toString(16)}"`
}

/**
 * The validators of a file, those the options send.
 *
 * @example
 * ```ts
 * validatorsOf({ size: 1000, mtimeMs: 1700000000123.4, ino: 42 }, { etag: 'weak', lastModified: true })
 * // { etag: 'W/"3e8-18bcfe5687b"', modified: 1700000000000 }
 * ```
 */
export function validatorsOf(file: FileVersion, send: { etag: EtagKind; lastModified: boolean }): Validators {
  return {
    etag: send.etag === 'strong' ? strongEtag(file) : send.etag === 'weak' ? weakEtag(file.size, file.mtimeMs) : undefined,
    modified: send.lastModified ? Math.floor(file.mtimeMs / 1000) * 1000 : undefined,
  }
}

/** The entity tags of an `If-Match`/`If-None-Match` value; `'*'` for the wildcard. */
function entityTags(value: string): string[] | '*' {
  if (value.trim() === '*') return '*'
  // Tags are quoted and may contain commas, so they are matched rather than split.
  return value.match(/(?:W\/)?"[^"]*"/g) ?? []
}

function opaque(tag: string): string {
  return tag.startsWith('W/') ? tag.slice(2) : tag
}

/** RFC 9110 §8.8.3.2 strong comparison: both tags strong, and the same. */
function strongMatch(tag: string, etag: string | undefined): boolean {
  return etag !== undefined && !etag.startsWith('W/') && tag === etag
}

/** `Sun Nov  6 08:49:37 1994`: the asctime form (RFC 9110 §5.6.7), the one without `GMT`. */
const ASCTIME = /^[a-z]{3} [a-z]{3} [ \d]\d \d{2}:\d{2}:\d{2} \d{4}$/i

/**
 * An HTTP-date in any of the three RFC 9110 §5.6.7 forms (IMF-fixdate, RFC 850, asctime), in
 * ms; undefined for anything else, which the preconditions then ignore.
 *
 * @example
 * ```ts
 * httpDate('Sun, 06 Nov 1994 08:49:37 GMT') // 784111777000
 * httpDate('yesterday') // undefined
 * ```
 */
export function httpDate(value: string | undefined): number | undefined {
  // Date.parse is lenient ('1' is 2001); insist on a time of day, which every HTTP-date has.
  if (value === undefined || !/\d{1,2}:\d{2}:\d{2}/.test(value)) return undefined
  // asctime carries no zone, and Date.parse would read it as the server's local time; it is UTC.
  const time = Date.parse(ASCTIME.test(value.trim()) ? `${value} GMT` : value)
  return Number.isNaN(time) ? undefined : time
}

/**
 * The status the preconditions answer, in RFC 9110 §13.2.2 order: If-Match, else
 * If-Unmodified-Since; then If-None-Match, else If-Modified-Since (GET and HEAD only). A
 * matching If-None-Match is 304 for GET and HEAD, 412 for other methods. If-None-Match compares
 * weakly and If-Match strongly, as the RFC says: with `etag: 'weak'`, If-Match with a tag
 * never holds (a weak tag cannot promise the same bytes).
 *
 * @example
 * ```ts
 * preconditions('GET', { 'if-none-match': 'W/"3e8-1"' }, { etag: '"3e8-1"', modified: undefined }) // 304
 * ```
 */
export function preconditions(method: string | undefined, headers: ConditionalHeaders, { etag, modified }: Validators): 200 | 304 | 412 {
  const safe = method === 'GET' || method === 'HEAD'
  const ifMatch = headers['if-match']
  if (ifMatch !== undefined) {
    const tags = entityTags(ifMatch)
    if (tags !== '*' && !tags.some((tag) => strongMatch(tag, etag))) return 412
  } else if (modified !== undefined) {
    const since = httpDate(headers['if-unmodified-since'])
    if (since !== undefined && modified > since) return 412
  }
  const ifNoneMatch = headers['if-none-match']
  if (ifNoneMatch !== undefined) {
    const tags = entityTags(ifNoneMatch)
    if (tags === '*' || (etag !== undefined && tags.some((tag) => opaque(tag) === opaque(etag)))) return safe ? 304 : 412
  } else if (safe && modified !== undefined) {
    const since = httpDate(headers['if-modified-since'])
    if (since !== undefined && modified <= since) return 304
  }
  return 200
}

/**
 * Whether an `If-Range` value (absent: true) still names this file: its ETag by strong
 * comparison (a weak tag never holds, RFC 9110 §13.1.5), or exactly its Last-Modified date.
 * False sends the whole file instead of the range.
 *
 * @example
 * ```ts
 * ifRangeHolds('Sun, 06 Nov 1994 08:49:37 GMT', { etag: undefined, modified: 784111777000 }) // true
 * ```
 */
export function ifRangeHolds(value: string | string[] | undefined, { etag, modified }: Validators): boolean {
  if (value === undefined) return true
  const condition = (Array.isArray(value) ? value.join(', ') : value).trim()
  if (condition.startsWith('"') || condition.startsWith('W/"')) return strongMatch(condition, etag)
  const date = httpDate(condition)
  return date !== undefined && date === modified
}
