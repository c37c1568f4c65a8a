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

export type RangeAnswer = ByteRange | 'whole' | 'unsatisfiable'

/**
 * The byte range a `Range` value asks of a file of `size` bytes. A malformed value, another
 * unit, or several ranges answer `'whole'` (several ranges would need a multipart/byteranges
 * body; the whole file is always a correct answer). A value whose every range starts past the
 * end, including any range of an empty file, is `'unsatisfiable'`.
 *
 * @example
 * ```ts
 * byteRange('bytes=-100', 1000) // { start: 900, end: 999 }
 * byteRange('bytes=0-0,5-9', 1000) // 'whole'
 * byteRange('bytes=1000-', 1000) // 'unsatisfiable'
 * ```
 */
export function byteRange(value: string, size: number): RangeAnswer {
  const match = /^\s*bytes\s*=(.*)$/i.exec(value)
  if (match === null) return 'whole'
  const specs = match[1]
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '')
  if (specs.length === 0) return 'whole'
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
  return specs.length === 1 ? satisfiable[0] : 'whole'
}

/**
 * The range a request with `method` and `Range` value `value` gets: GET is the only method
 * with range semantics (RFC 9110 §14.2), so HEAD gets the headers of the 200.
 */
export function requestedRange(method: string | undefined, value: string | undefined, size: number): RangeAnswer {
  if (method !== 'GET' || value === undefined) return 'whole'
  return byteRange(value, size)
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
