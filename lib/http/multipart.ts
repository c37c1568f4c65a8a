/**
 * The shape of a file response's body: ranges of the file, each after a few bytes of its own
 * (the part headers of a `multipart/byteranges` body, RFC 9110 §14.6), then a few closing
 * bytes. A single range or the whole file is one part with nothing around it. Pure functions:
 * the body module sends the file's bytes zero-copy and writes the rest.
 */
import type { BodyRange, ByteRange } from './ranges.js'
import { contentRange } from './ranges.js'

/** One stretch of the body: `head` as it is, then `range` of the file. */
export interface BodyPart {
  head: Buffer
  range: BodyRange
}

/** What a response's body is made of, and its exact length (the Content-Length). */
export interface FileBody {
  parts: BodyPart[]
  tail: Buffer
  length: number
}

const NOTHING = Buffer.alloc(0)

/** A body that is one range of the file (or all of it), nothing around it. */
export function plainBody(range: BodyRange): FileBody {
  return { parts: [{ head: NOTHING, range }], tail: NOTHING, length: range.length }
}

/** The one range a plain body sends; undefined for a multipart body. */
export function plainRange(body: FileBody): BodyRange | undefined {
  return body.parts.length === 1 && body.parts[0].head.length === 0 && body.tail.length === 0 ? body.parts[0].range : undefined
}

/**
 * A `multipart/byteranges` body of `ranges` of a file of `size` bytes whose type is `partType`,
 * delimited by `boundary` (RFC 2046 §5.1.1: each part after CRLF `--boundary` CRLF and its
 * headers, the body closed by CRLF `--boundary--`; the first delimiter needs no CRLF before it).
 *
 * @example
 * ```ts
 * multipartBody([{ start: 0, end: 1 }], 10, 'text/plain', 'B').parts[0].head.toString()
 * // '--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-1/10\r\n\r\n'
 * ```
 */
export function multipartBody(ranges: ByteRange[], size: number, partType: string, boundary: string): FileBody {
  const parts = ranges.map((range, index) => ({
    head: Buffer.from(
      `${index === 0 ? '' : '\r\n'}--${boundary}\r\nContent-Type: ${partType}\r\nContent-Range: ${contentRange(range, size)}\r\n\r\n`,
      'latin1',
    ),
    range: { start: range.start, length: range.end - range.start + 1 },
  }))
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`, 'latin1')
  const length = parts.reduce((total, part) => total + part.head.length + part.range.length, tail.length)
  return { parts, tail, length }
}

/** `Content-Type` of a multipart/byteranges response. */
export function multipartType(boundary: string): string {
  return `multipart/byteranges; boundary=${boundary}`
}
