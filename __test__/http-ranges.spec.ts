/**
 * Byte ranges (RFC 9110 §14) as pure functions: a `Range` value and a size in, the bytes to
 * send out. The socket-level tests in http.spec.ts check the wiring; these check the rules.
 */
import test from 'ava'

import { type RangeAnswer, bodyOf, byteRange, contentRange, requestedRange, unsatisfiedRange } from '../lib/http/ranges'

interface RangeCase {
  range: string
  size: number
  expected: RangeAnswer
  why: string
}

const SIZE = 1000

const byteRangeCases: RangeCase[] = [
  // One satisfiable range: 206 with exactly those bytes (RFC 9110 §14.1.2).
  { range: 'bytes=0-99', size: SIZE, expected: { start: 0, end: 99 }, why: 'first and last byte, inclusive' },
  { range: 'bytes=0-0', size: SIZE, expected: { start: 0, end: 0 }, why: 'the first byte alone' },
  { range: 'bytes=999-999', size: SIZE, expected: { start: 999, end: 999 }, why: 'the last byte alone' },
  { range: 'bytes=0-999', size: SIZE, expected: { start: 0, end: 999 }, why: 'the whole file as a range' },
  { range: 'bytes=990-2000', size: SIZE, expected: { start: 990, end: 999 }, why: 'a last byte past the end is the end' },
  { range: 'bytes=0-99999999999999999999', size: SIZE, expected: { start: 0, end: 999 }, why: 'a last byte past any size' },
  // Open ranges: from a byte to the end.
  { range: 'bytes=100-', size: SIZE, expected: { start: 100, end: 999 }, why: 'open range' },
  { range: 'bytes=0-', size: SIZE, expected: { start: 0, end: 999 }, why: 'open range from the start' },
  { range: 'bytes=999-', size: SIZE, expected: { start: 999, end: 999 }, why: 'open range at the last byte' },
  // Suffix ranges: the last N bytes.
  { range: 'bytes=-100', size: SIZE, expected: { start: 900, end: 999 }, why: 'suffix range' },
  { range: 'bytes=-1', size: SIZE, expected: { start: 999, end: 999 }, why: 'suffix of one byte' },
  { range: 'bytes=-1000', size: SIZE, expected: { start: 0, end: 999 }, why: 'suffix as long as the file' },
  { range: 'bytes=-2000', size: SIZE, expected: { start: 0, end: 999 }, why: 'suffix longer than the file is all of it' },
  // Whitespace and case: optional whitespace around the list, the unit is case-insensitive.
  { range: ' bytes = 0-99 ', size: SIZE, expected: { start: 0, end: 99 }, why: 'spaces around = and the value' },
  { range: 'bytes=\t0-99', size: SIZE, expected: { start: 0, end: 99 }, why: 'a tab before the range' },
  { range: 'BYTES=0-99', size: SIZE, expected: { start: 0, end: 99 }, why: 'the unit in capitals' },
  { range: 'Bytes=-5', size: SIZE, expected: { start: 995, end: 999 }, why: 'the unit capitalized' },
  { range: 'bytes=0-99,', size: SIZE, expected: { start: 0, end: 99 }, why: 'an empty list element is skipped (§5.6.1)' },
  { range: 'bytes=, ,0-99', size: SIZE, expected: { start: 0, end: 99 }, why: 'empty list elements first' },
  // Several ranges: the whole file (no multipart/byteranges), always a correct answer.
  { range: 'bytes=0-99,200-299', size: SIZE, expected: 'whole', why: 'two ranges' },
  { range: 'bytes=0-0, -1', size: SIZE, expected: 'whole', why: 'a range and a suffix' },
  { range: 'bytes=0-99,0-99', size: SIZE, expected: 'whole', why: 'the same range twice' },
  { range: 'bytes=0-99, 2000-3000', size: SIZE, expected: 'whole', why: 'one satisfiable of two' },
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
  { range: 'bytes=0-0', size: 1, expected: { start: 0, end: 0 }, why: 'the one byte of a one-byte file' },
  { range: 'bytes=-5', size: 1, expected: { start: 0, end: 0 }, why: 'suffix longer than a one-byte file' },
]

test('byteRange: single, open and suffix ranges; several, malformed or other units → whole; past the end → unsatisfiable', (t) => {
  for (const { range, size, expected, why } of byteRangeCases)
    t.deepEqual(byteRange(range, size), expected, `${JSON.stringify(range)} of ${size} bytes: ${why}`)
})

const requestedRangeCases: Array<{ method: string | undefined; range: string | undefined; expected: RangeAnswer }> = [
  { method: 'GET', range: 'bytes=0-9', expected: { start: 0, end: 9 } },
  { method: 'GET', range: undefined, expected: 'whole' },
  { method: 'GET', range: 'bytes=5000-', expected: 'unsatisfiable' },
  // Range has meaning for GET only (§14.2): HEAD gets the headers of the 200, others ignore it.
  { method: 'HEAD', range: 'bytes=0-9', expected: 'whole' },
  { method: 'HEAD', range: 'bytes=5000-', expected: 'whole' },
  { method: 'POST', range: 'bytes=0-9', expected: 'whole' },
  { method: undefined, range: 'bytes=0-9', expected: 'whole' },
]

test('requestedRange: only GET has range semantics', (t) => {
  for (const { method, range, expected } of requestedRangeCases) t.deepEqual(requestedRange(method, range, SIZE), expected, `${method} with Range ${range}`)
})

test('the body and the Content-Range of an answer', (t) => {
  const bodies: Array<{ range: Exclude<RangeAnswer, 'unsatisfiable'>; size: number; expected: { start: number; length: number } }> = [
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
