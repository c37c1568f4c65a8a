/**
 * Byte ranges (RFC 9110 §14) as pure functions: a `Range` value and a size in, the bytes to
 * send out. The socket-level tests in http.spec.ts check the wiring; these check the rules.
 */
import test from 'ava'

import { type RangeAnswer, bodyOf, byteRanges, contentRange, requestedRanges, unsatisfiedRange } from '../lib/http/ranges'

interface RangeCase {
  range: string
  size: number
  expected: RangeAnswer
  why: string
}

const SIZE = 1000

const byteRangeCases: RangeCase[] = [
  // One satisfiable range: 206 with exactly those bytes (RFC 9110 §14.1.2).
  { range: 'bytes=0-99', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'first and last byte, inclusive' },
  { range: 'bytes=0-0', size: SIZE, expected: [{ start: 0, end: 0 }], why: 'the first byte alone' },
  { range: 'bytes=999-999', size: SIZE, expected: [{ start: 999, end: 999 }], why: 'the last byte alone' },
  { range: 'bytes=0-999', size: SIZE, expected: [{ start: 0, end: 999 }], why: 'the whole file as a range' },
  { range: 'bytes=990-2000', size: SIZE, expected: [{ start: 990, end: 999 }], why: 'a last byte past the end is the end' },
  { range: 'bytes=0-99999999999999999999', size: SIZE, expected: [{ start: 0, end: 999 }], why: 'a last byte past any size' },
  // Open ranges: from a byte to the end.
  { range: 'bytes=100-', size: SIZE, expected: [{ start: 100, end: 999 }], why: 'open range' },
  { range: 'bytes=0-', size: SIZE, expected: [{ start: 0, end: 999 }], why: 'open range from the start' },
  { range: 'bytes=999-', size: SIZE, expected: [{ start: 999, end: 999 }], why: 'open range at the last byte' },
  // Suffix ranges: the last N bytes.
  { range: 'bytes=-100', size: SIZE, expected: [{ start: 900, end: 999 }], why: 'suffix range' },
  { range: 'bytes=-1', size: SIZE, expected: [{ start: 999, end: 999 }], why: 'suffix of one byte' },
  { range: 'bytes=-1000', size: SIZE, expected: [{ start: 0, end: 999 }], why: 'suffix as long as the file' },
  { range: 'bytes=-2000', size: SIZE, expected: [{ start: 0, end: 999 }], why: 'suffix longer than the file is all of it' },
  // Whitespace and case: optional whitespace around the list, the unit is case-insensitive.
  { range: ' bytes = 0-99 ', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'spaces around = and the value' },
  { range: 'bytes=\t0-99', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'a tab before the range' },
  { range: 'BYTES=0-99', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'the unit in capitals' },
  { range: 'Bytes=-5', size: SIZE, expected: [{ start: 995, end: 999 }], why: 'the unit capitalized' },
  { range: 'bytes=0-99,', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'an empty list element is skipped (§5.6.1)' },
  { range: 'bytes=, ,0-99', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'empty list elements first' },
  // Several ranges: multipart/byteranges, in the order asked unless some had to be coalesced (§14.3).
  {
    range: 'bytes=0-99,200-299',
    size: SIZE,
    expected: [
      { start: 0, end: 99 },
      { start: 200, end: 299 },
    ],
    why: 'two ranges',
  },
  {
    range: 'bytes=500-599,0-99',
    size: SIZE,
    expected: [
      { start: 500, end: 599 },
      { start: 0, end: 99 },
    ],
    why: 'in the order asked',
  },
  {
    range: 'bytes=0-0, -1',
    size: SIZE,
    expected: [
      { start: 0, end: 0 },
      { start: 999, end: 999 },
    ],
    why: 'a range and a suffix',
  },
  { range: 'bytes=0-99,0-99', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'the same range twice is one' },
  { range: 'bytes=0-99,50-149', size: SIZE, expected: [{ start: 0, end: 149 }], why: 'two overlapping ranges are coalesced' },
  { range: 'bytes=100-199,0-99', size: SIZE, expected: [{ start: 0, end: 199 }], why: 'adjacent ranges are coalesced, ascending' },
  {
    range: 'bytes=900-,0-9,5-19',
    size: SIZE,
    expected: [
      { start: 0, end: 19 },
      { start: 900, end: 999 },
    ],
    why: 'coalescing sorts the set',
  },
  { range: 'bytes=0-99, 2000-3000', size: SIZE, expected: [{ start: 0, end: 99 }], why: 'an unsatisfiable range among others is dropped' },
  // Signs of a broken client or an attack (§14.3): the whole file instead.
  { range: 'bytes=0-,0-,0-', size: SIZE, expected: 'whole', why: 'the same range three times' },
  { range: 'bytes=0-99,50-149,100-199', size: SIZE, expected: 'whole', why: 'more than one overlap' },
  {
    range: `bytes=${Array.from({ length: 33 }, (_, at) => `${at * 10}-${at * 10 + 1}`).join(',')}`,
    size: SIZE,
    expected: 'whole',
    why: 'more than maxRanges (32)',
  },
  {
    range: `bytes=${Array.from({ length: 32 }, (_, at) => `${at * 10}-${at * 10 + 1}`).join(',')}`,
    size: SIZE,
    expected: Array.from({ length: 32 }, (_, at) => ({ start: at * 10, end: at * 10 + 1 })),
    why: 'exactly maxRanges (32)',
  },
  // Malformed: ignored, so the whole file.
  { range: '', size: SIZE, expected: 'whole', why: 'empty' },
  { range: 'bytes=', size: SIZE, expected: 'whole', why: 'no range' },
  { range: 'bytes=,', size: SIZE, expected: 'whole', why: 'only empty elements' },
  { range: 'bytes=-', size: SIZE, expected: 'whole', why: 'neither first nor last' },
  { range: 'bytes=5-1', size: SIZE, expected: 'whole', why: 'last before first (§14.1.1: invalid)' },
  { range: 'bytes=abc', size: SIZE, expected: 'whole', why: 'not numbers' },
  { range: 'bytes=1-2-3', size: SIZE, expected: 'whole', why: 'two dashes' },
  { range: 'bytes=0 - 99', size: SIZE, expected: 'whole', why: 'spaces inside a range' },
  { range: 'bytes=0x10-20', size: SIZE, expected: 'whole', why: 'hexadecimal' },
  { range: 'bytes=+1-2', size: SIZE, expected: 'whole', why: 'a sign' },
  { range: 'bytes=1.5-2', size: SIZE, expected: 'whole', why: 'a fraction' },
  { range: 'bytes 0-99', size: SIZE, expected: 'whole', why: 'no =' },
  { range: '0-99', size: SIZE, expected: 'whole', why: 'no unit' },
  { range: 'bytes=0-99,5-1', size: SIZE, expected: 'whole', why: 'one invalid range spoils the set' },
  { range: 'bytes=2000-,5-1', size: SIZE, expected: 'whole', why: 'malformed wins over unsatisfiable' },
  // Other units: not ours to understand (§14.1), so the whole file.
  { range: 'items=0-5', size: SIZE, expected: 'whole', why: 'another unit' },
  { range: 'none', size: SIZE, expected: 'whole', why: 'the none token' },
  { range: 'bytesx=0-5', size: SIZE, expected: 'whole', why: 'a unit that starts like bytes' },
  // Unsatisfiable: every range starts past the end (416 with bytes */size).
  { range: 'bytes=1000-', size: SIZE, expected: 'unsatisfiable', why: 'open range at the size' },
  { range: 'bytes=1000-2000', size: SIZE, expected: 'unsatisfiable', why: 'range past the end' },
  { range: 'bytes=1000-,2000-', size: SIZE, expected: 'unsatisfiable', why: 'every one of several past the end' },
  { range: 'bytes=-0', size: SIZE, expected: 'unsatisfiable', why: 'a suffix of no bytes (§14.1.3)' },
  // An empty file satisfies no range, a suffix included; malformed is still the whole (empty) file.
  { range: 'bytes=0-', size: 0, expected: 'unsatisfiable', why: 'open range of an empty file' },
  { range: 'bytes=0-0', size: 0, expected: 'unsatisfiable', why: 'first byte of an empty file' },
  { range: 'bytes=-1', size: 0, expected: 'unsatisfiable', why: 'suffix of an empty file' },
  { range: 'bytes=-0', size: 0, expected: 'unsatisfiable', why: 'empty suffix of an empty file' },
  { range: 'bytes=abc', size: 0, expected: 'whole', why: 'malformed, empty file' },
  { range: 'bytes=0-0', size: 1, expected: [{ start: 0, end: 0 }], why: 'the one byte of a one-byte file' },
  { range: 'bytes=-5', size: 1, expected: [{ start: 0, end: 0 }], why: 'suffix longer than a one-byte file' },
]

test('byteRanges: single, open, suffix and several ranges; malformed, other units or attacks → whole; past the end → unsatisfiable', (t) => {
  for (const { range, size, expected, why } of byteRangeCases)
    t.deepEqual(byteRanges(range, size), expected, `${JSON.stringify(range)} of ${size} bytes: ${why}`)
})

test('byteRanges: maxRanges caps the count of ranges asked for, 1 allowing single ranges only', (t) => {
  t.deepEqual(byteRanges('bytes=0-0,5-9', SIZE, 2), [
    { start: 0, end: 0 },
    { start: 5, end: 9 },
  ])
  t.is(byteRanges('bytes=0-0,5-9,20-29', SIZE, 2), 'whole')
  t.is(byteRanges('bytes=0-0,5-9', SIZE, 1), 'whole')
  t.deepEqual(byteRanges('bytes=5-9', SIZE, 1), [{ start: 5, end: 9 }])
})

const requestedRangeCases: Array<{ method: string | undefined; range: string | undefined; expected: RangeAnswer }> = [
  { method: 'GET', range: 'bytes=0-9', expected: [{ start: 0, end: 9 }] },
  { method: 'GET', range: undefined, expected: 'whole' },
  { method: 'GET', range: 'bytes=5000-', expected: 'unsatisfiable' },
  // HEAD answers with the headers GET would have (as nginx and Apache do); other methods ignore Range.
  { method: 'HEAD', range: 'bytes=0-9', expected: [{ start: 0, end: 9 }] },
  { method: 'HEAD', range: 'bytes=5000-', expected: 'unsatisfiable' },
  { method: 'POST', range: 'bytes=0-9', expected: 'whole' },
  { method: undefined, range: 'bytes=0-9', expected: 'whole' },
]

test('requestedRanges: GET and HEAD have range semantics, other methods do not', (t) => {
  for (const { method, range, expected } of requestedRangeCases) t.deepEqual(requestedRanges(method, range, SIZE), expected, `${method} with Range ${range}`)
})

test('the body and the Content-Range of an answer', (t) => {
  const bodies: Array<{ range: { start: number; end: number } | 'whole'; size: number; expected: { start: number; length: number } }> = [
    { range: 'whole', size: SIZE, expected: { start: 0, length: SIZE } },
    { range: 'whole', size: 0, expected: { start: 0, length: 0 } },
    { range: { start: 0, end: 99 }, size: SIZE, expected: { start: 0, length: 100 } },
    { range: { start: 999, end: 999 }, size: SIZE, expected: { start: 999, length: 1 } },
  ]
  for (const { range, size, expected } of bodies) t.deepEqual(bodyOf(range, size), expected, JSON.stringify(range))
  const headers: Array<{ range: { start: number; end: number }; size: number; expected: string }> = [
    { range: { start: 0, end: 99 }, size: SIZE, expected: 'bytes 0-99/1000' },
    { range: { start: 999, end: 999 }, size: SIZE, expected: 'bytes 999-999/1000' },
  ]
  for (const { range, size, expected } of headers) t.is(contentRange(range, size), expected)
  t.is(unsatisfiedRange(SIZE), 'bytes */1000')
  t.is(unsatisfiedRange(0), 'bytes */0')
})
