/**
 * Byte ranges (RFC 9110 §14): which bytes of a file a request asks for, and the header that
 * describes the answer. Pure functions of header values and sizes.
 */

/** The bytes of the file a 200 or 206 sends. */
export interface BodyRange {
  start: number
  length: number
}

/** One range of a file, `end` inclusive as `Content-Range` writes it. */
export interface ByteRange {
  start: number
  end: number
}

/** The ranges a request gets: one or more (in the order they go out), the whole file, or none (416). */
export type RangeAnswer = ByteRange[] | 'whole' | 'unsatisfiable'

/** Default of `maxRanges`: more ranges than any player or download manager asks for at once. */
export const DEFAULT_MAX_RANGES = 32

/**
 * The byte ranges a `Range` value asks of a file of `size` bytes. A malformed value or another
 * unit answers `'whole'` (ignored, RFC 9110 §14.2), as do more than `maxRanges` ranges and
 * ranges that overlap more than once (§14.3: signs of a broken client or of an attack, which a
 * server may ignore). A value whose every range starts past the end, including any range of an
 * empty file, is `'unsatisfiable'`; unsatisfiable ranges among satisfiable ones are dropped.
 * Overlapping or adjacent ranges are coalesced (§14.3 allows it), and the set then goes out in
 * ascending order; otherwise in the order asked.
 *
 * @example
 * ```ts
 * byteRanges('bytes=-100', 1000) // [{ start: 900, end: 999 }]
 * byteRanges('bytes=500-599,0-99', 1000) // [{ start: 500, end: 599 }, { start: 0, end: 99 }]
 * byteRanges('bytes=0-99,100-199', 1000) // [{ start: 0, end: 199 }]
 * byteRanges('bytes=1000-', 1000) // 'unsatisfiable'
 * ```
 */
export function byteRanges(value: string, size: number, maxRanges = DEFAULT_MAX_RANGES): RangeAnswer {
  const match = /^\s*bytes\s*=(.*)$/i.exec(value)
  if (match === null) return 'whole'
  const specs = match[1]
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '')
  if (specs.length === 0 || specs.length > maxRanges) return 'whole'
  const satisfiable: ByteRange[] = []
  for (const spec of specs) {
    const parts = /^(\d*)-(\d*)$/.exec(spec)
    if (parts === null || (parts[1] === '' && parts[2] === '')) return 'whole'
    if (parts[1] === '') {
      // bytes=-N: the last N bytes.
      const suffix = Number(parts[2])
      if (suffix > 0 && size > 0) satisfiable.push({ start: Math.max(0, size - suffix), end: size - 1 })
      continue
    }
    const start = Number(parts[1])
    const last = parts[2] === '' ? Infinity : Number(parts[2])
    if (last < start) return 'whole'
    if (start < size) satisfiable.push({ start, end: Math.min(last, size - 1) })
  }
  if (satisfiable.length === 0) return 'unsatisfiable'
  return coalesced(satisfiable)
}

/**
 * `ranges` with overlapping and adjacent ones merged, ascending; as asked when none touch;
 * `'whole'` when more than one overlaps another (`bytes=0-,0-,0-…` would send the file many times).
 */
function coalesced(ranges: ByteRange[]): ByteRange[] | 'whole' {
  if (ranges.length === 1) return ranges
  const ascending = [...ranges].sort((a, b) => a.start - b.start)
  const merged: ByteRange[] = [{ ...ascending[0] }]
  let overlaps = 0
  for (const range of ascending.slice(1)) {
    const last = merged[merged.length - 1]
    if (range.start <= last.end) overlaps++
    if (range.start <= last.end + 1) last.end = Math.max(last.end, range.end)
    else merged.push({ ...range })
  }
  if (overlaps > 1) return 'whole'
  return merged.length === ranges.length ? ranges : merged
}

/**
 * The ranges a request with `method` and `Range` value `value` gets: GET and HEAD (which answers
 * with the headers GET would have, as nginx and Apache do); any other method ignores `Range`.
 */
export function requestedRanges(method: string | undefined, value: string | undefined, size: number, maxRanges = DEFAULT_MAX_RANGES): RangeAnswer {
  if ((method !== 'GET' && method !== 'HEAD') || value === undefined) return 'whole'
  return byteRanges(value, size, maxRanges)
}

/** The body a range answer sends. */
export function bodyOf(range: ByteRange | 'whole', size: number): BodyRange {
  return range === 'whole' ? { start: 0, length: size } : { start: range.start, length: range.end - range.start + 1 }
}

/** `Content-Range` of a 206. */
export function contentRange({ start, end }: ByteRange, size: number): string {
  return `bytes ${start}-${end}/${size}`
}

/** `Content-Range` of a 416: no range, the size the client should have asked within. */
export function unsatisfiedRange(size: number): string {
  return `bytes */${size}`
}
