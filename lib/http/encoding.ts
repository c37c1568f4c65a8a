/**
 * Content negotiation of precompressed files (RFC 9110 §12.5.3): which of the encodings a file
 * has on disk beside it (`app.js.br`, `app.js.zst`, `app.js.gz`) a request's `Accept-Encoding`
 * takes. Pure functions of header values.
 */

/** The encodings a precompressed variant may have, as `Content-Encoding` names them. */
export type Encoding = 'br' | 'zstd' | 'gzip'

export const ENCODINGS: readonly Encoding[] = ['br', 'zstd', 'gzip']

/** The file name suffix of each encoding's variant, as the usual compressors write it. */
export const VARIANT_SUFFIX: Readonly<Record<Encoding, '.br' | '.zst' | '.gz'>> = { br: '.br', zstd: '.zst', gzip: '.gz' }

/** A coding's weight: 0 refuses it; undefined when the header says nothing about it. */
function weights(acceptEncoding: string): Map<string, number> {
  const weighted = new Map<string, number>()
  for (const element of acceptEncoding.split(',')) {
    const [name, ...parameters] = element.split(';').map((part) => part.trim())
    if (name === '' || !/^[!#$%&'*+.^_`|~0-9a-z-]+$/i.test(name)) continue
    let weight = 1
    for (const parameter of parameters) {
      const q = /^q\s*=\s*(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/i.exec(parameter)
      // A malformed weight makes the element unusable rather than preferred.
      if (/^q\s*=/i.test(parameter)) weight = q === null ? 0 : Number(q[1])
    }
    const coding = name.toLowerCase() === 'x-gzip' ? 'gzip' : name.toLowerCase()
    // The same coding twice: the first says it (RFC 9110 leaves it undefined; nginx does the same).
    if (!weighted.has(coding)) weighted.set(coding, weight)
  }
  return weighted
}

/**
 * The variants of `configured` (the encodings the server may send, in its order of preference)
 * that a request's `Accept-Encoding` takes, best first: the highest `q` first, ties in the
 * server's order; `q=0` refuses a coding; `*` stands for every coding the header does not name.
 * Empty means the file itself (`identity`): when the header is absent (curl and most tools ask
 * for nothing), empty, refuses every variant, or gives `identity` a higher weight than any
 * variant (then variants below it are not wanted). When identity is refused too, the file itself
 * is still the answer: RFC 9110 §12.5.3 lets a server ignore the header rather than answer 406.
 *
 * @example
 * ```ts
 * acceptableEncodings('gzip, deflate, br, zstd', ['br', 'zstd', 'gzip']) // ['br', 'zstd', 'gzip']
 * acceptableEncodings('br;q=0.5, gzip', ['br', 'gzip']) // ['gzip', 'br']
 * acceptableEncodings('br;q=0', ['br']) // []
 * ```
 */
export function acceptableEncodings(acceptEncoding: string | string[] | undefined, configured: readonly Encoding[]): Encoding[] {
  if (acceptEncoding === undefined || configured.length === 0) return []
  const weighted = weights(Array.isArray(acceptEncoding) ? acceptEncoding.join(',') : acceptEncoding)
  const wildcard = weighted.get('*')
  const identity = weighted.get('identity') ?? 0
  const accepted = configured
    .map((encoding, preference) => ({ encoding, preference, weight: weighted.get(encoding) ?? wildcard ?? 0 }))
    .filter(({ weight }) => weight > 0 && weight >= identity)
  return accepted.sort((a, b) => b.weight - a.weight || a.preference - b.preference).map(({ encoding }) => encoding)
}
