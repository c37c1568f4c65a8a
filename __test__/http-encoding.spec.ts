/**
 * The pure parts of precompressed variants, downloads and multipart bodies: `Accept-Encoding`
 * negotiation (RFC 9110 §12.5.3), `Content-Disposition` file names (RFC 6266 / RFC 8187) and the
 * exact bytes around the ranges of a `multipart/byteranges` body (RFC 9110 §14.6). The socket
 * tests in http-options.spec.ts check the wiring; these check the rules.
 */
import test from 'ava'

import { attachment } from '../lib/http/disposition'
import { type Encoding, acceptableEncodings } from '../lib/http/encoding'
import { multipartBody, multipartType, plainBody, plainRange } from '../lib/http/multipart'

const ALL: Encoding[] = ['br', 'zstd', 'gzip']

const negotiationCases: Array<{ header: string | string[] | undefined; configured?: Encoding[]; expected: Encoding[]; why: string }> = [
  { header: undefined, expected: [], why: 'no Accept-Encoding: the file itself (curl, most tools)' },
  { header: '', expected: [], why: 'an empty header asks for no coding' },
  { header: 'gzip, deflate, br, zstd', expected: ['br', 'zstd', 'gzip'], why: "a browser's header: the server's order" },
  { header: 'gzip', expected: ['gzip'], why: 'only gzip' },
  { header: 'x-gzip', expected: ['gzip'], why: 'x-gzip is gzip (RFC 9110 §8.4.1.3)' },
  { header: 'GZIP, BR', expected: ['br', 'gzip'], why: 'coding names are case-insensitive' },
  { header: 'br;q=0.5, gzip', expected: ['gzip', 'br'], why: 'a higher q first' },
  { header: 'br;q=0.5, gzip;q=0.5', expected: ['br', 'gzip'], why: "equal q: the server's order" },
  { header: 'br;q=0, gzip', expected: ['gzip'], why: 'q=0 refuses' },
  { header: 'br; q=0.000', expected: [], why: 'q=0.000 refuses too' },
  { header: 'br;Q=1.0', expected: ['br'], why: 'the q parameter is case-insensitive' },
  { header: 'br;q=2', expected: [], why: 'a q out of range makes the element unusable' },
  { header: 'br;q=abc, gzip', expected: ['gzip'], why: 'a malformed q makes the element unusable' },
  { header: '*', expected: ['br', 'zstd', 'gzip'], why: '* takes every coding' },
  { header: '*;q=0', expected: [], why: '*;q=0 refuses every coding' },
  { header: 'gzip, *;q=0', expected: ['gzip'], why: 'named codings beat the wildcard' },
  { header: 'br;q=0, *', expected: ['zstd', 'gzip'], why: 'the wildcard covers what is not named' },
  { header: 'identity', expected: [], why: 'identity alone: the file itself' },
  { header: 'gzip;q=0.5, identity', expected: [], why: 'identity weighted higher than every variant' },
  { header: 'gzip, identity;q=0.5', expected: ['gzip'], why: 'identity weighted lower' },
  { header: 'br, identity;q=0', expected: ['br'], why: 'identity refused, br taken' },
  { header: 'deflate, compress', expected: [], why: 'codings there are no variants for' },
  { header: 'br', configured: ['gzip'], expected: [], why: 'br is not configured' },
  { header: 'br, gzip', configured: ['gzip', 'br'], expected: ['gzip', 'br'], why: "the configured order is the server's preference" },
  { header: ['gzip', 'br;q=0.1'], expected: ['gzip', 'br'], why: 'a header given as an array' },
  { header: 'br;q=0.5, br', expected: ['br'], why: 'a coding named twice: the first says it' },
  { header: ' ,, gzip ,', expected: ['gzip'], why: 'empty list elements are skipped' },
  { header: 'g zip, br', expected: ['br'], why: 'an element that is not a token is skipped' },
]

test('acceptableEncodings: q-values, q=0 refuses, *, identity, the server order on ties', (t) => {
  for (const { header, configured = ALL, expected, why } of negotiationCases)
    t.deepEqual(acceptableEncodings(header, configured), expected, `${JSON.stringify(header)} of ${configured.join(',')}: ${why}`)
  t.deepEqual(acceptableEncodings('br', []), [], 'nothing configured')
})

const dispositionCases: Array<{ name: string; expected: string; why: string }> = [
  { name: 'report.pdf', expected: 'attachment; filename="report.pdf"', why: 'plain ASCII: filename alone' },
  { name: 'my report (final).pdf', expected: 'attachment; filename="my report (final).pdf"', why: 'spaces and parentheses are fine quoted' },
  {
    name: 'naïve café.txt',
    expected: `attachment; filename="na_ve caf_.txt"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.txt`,
    why: 'non-ASCII: a fallback and the UTF-8 name',
  },
  { name: '日本.txt', expected: `attachment; filename="__.txt"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt`, why: 'CJK' },
  { name: '😀.png', expected: `attachment; filename="_.png"; filename*=UTF-8''%F0%9F%98%80.png`, why: 'an astral character is one _' },
  { name: 'a"b.txt', expected: `attachment; filename="a_b.txt"; filename*=UTF-8''a%22b.txt`, why: 'a quote cannot end the quoted string early' },
  { name: 'a\\b.txt', expected: `attachment; filename="a_b.txt"; filename*=UTF-8''a%5Cb.txt`, why: 'a backslash' },
  { name: 'a\r\nX-Evil: 1', expected: `attachment; filename="a__X-Evil: 1"; filename*=UTF-8''a%0D%0AX-Evil%3A%201`, why: 'CR LF cannot split the header' },
  { name: 'a\x00\x7fb', expected: `attachment; filename="a__b"; filename*=UTF-8''a%00%7Fb`, why: 'NUL and DEL' },
  { name: '100%.txt', expected: `attachment; filename="100_.txt"; filename*=UTF-8''100%25.txt`, why: '% could be percent-decoded by a client' },
  { name: '../etc/passwd', expected: `attachment; filename=".._etc_passwd"; filename*=UTF-8''..%2Fetc%2Fpasswd`, why: 'a separator' },
  { name: "it's (1)*.txt", expected: `attachment; filename="it's (1)*.txt"`, why: "' ( ) * are fine in the quoted name" },
  { name: "é'(*)", expected: `attachment; filename="_'(*)"; filename*=UTF-8''%C3%A9%27%28%2A%29`, why: "' ( ) * are not attr-chars (RFC 8187)" },
  { name: 'a\ud800b', expected: `attachment; filename="a_b"; filename*=UTF-8''a%EF%BF%BDb`, why: 'a lone surrogate becomes U+FFFD' },
]

test('attachment: an ASCII filename with quotes, controls, % and non-ASCII neutralised, and filename* in UTF-8 when needed', (t) => {
  for (const { name, expected, why } of dispositionCases) t.is(attachment(name), expected, `${JSON.stringify(name)}: ${why}`)
})

test('multipartBody: each part after its delimiter and headers, the closing delimiter, and the exact length', (t) => {
  const body = multipartBody(
    [
      { start: 0, end: 1 },
      { start: 8, end: 9 },
    ],
    10,
    'text/plain; charset=utf-8',
    'BOUNDARY',
  )
  t.is(body.parts[0].head.toString(), '--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/10\r\n\r\n')
  t.is(body.parts[1].head.toString(), '\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 8-9/10\r\n\r\n')
  t.deepEqual(
    body.parts.map(({ range }) => range),
    [
      { start: 0, length: 2 },
      { start: 8, length: 2 },
    ],
  )
  t.is(body.tail.toString(), '\r\n--BOUNDARY--\r\n')
  const content = Buffer.from('0123456789')
  const assembled = Buffer.concat([...body.parts.flatMap(({ head, range }) => [head, content.subarray(range.start, range.start + range.length)]), body.tail])
  t.is(body.length, assembled.length)
  t.is(
    assembled.toString(),
    '--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 0-1/10\r\n\r\n01' +
      '\r\n--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Range: bytes 8-9/10\r\n\r\n89\r\n--BOUNDARY--\r\n',
  )
  t.is(multipartType('BOUNDARY'), 'multipart/byteranges; boundary=BOUNDARY')
  t.is(plainRange(body), undefined)
  t.deepEqual(plainRange(plainBody({ start: 3, length: 4 })), { start: 3, length: 4 })
  t.is(plainBody({ start: 3, length: 4 }).length, 4)
})
