/**
 * `Content-Disposition: attachment` (RFC 6266) with a file name every client can read: an ASCII
 * `filename` for old clients and, when the name is not plain ASCII, `filename*` in RFC 8187's
 * UTF-8 encoding, which clients that know it prefer. A pure function of the name.
 */

/**
 * The `Content-Disposition` value that offers a download named `filename`. In the ASCII
 * `filename`, what a quoted string cannot carry or a client could misread is replaced with `_`:
 * quotes, backslashes, control characters, `%` (some clients percent-decode it), path separators
 * and every non-ASCII character.
 *
 * @example
 * ```ts
 * attachment('report.pdf') // 'attachment; filename="report.pdf"'
 * attachment('naïve café.txt') // `attachment; filename="na_ve caf_.txt"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.txt`
 * ```
 */
export function attachment(filename: string): string {
  const fallback = filename.replace(/[^\x20-\x7e]|["\\%/]/gu, '_')
  if (fallback === filename) return `attachment; filename="${fallback}"`
  return `attachment; filename="${fallback}"; filename*=UTF-8''${extendedValue(filename)}`
}

/** RFC 8187 `value-chars`: UTF-8, every byte outside `attr-char` percent-encoded. */
function extendedValue(value: string): string {
  // encodeURIComponent leaves ' ( ) * unencoded, which attr-char does not allow; lone surrogates become U+FFFD first.
  return encodeURIComponent(value.replace(/\p{Cs}/gu, '\ufffd')).replace(/['()*]/g, (char) => `%${char.charCodeAt(0).toString(16).toUpperCase()}`)
}
