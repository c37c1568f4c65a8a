/**
 * Conditional requests (RFC 9110 §13) as pure functions: header values and a file's validators
 * in, the status (200, 304, 412) or whether `If-Range` holds out. The socket-level tests in
 * http.spec.ts check the wiring; these check the rules.
 */
import test from 'ava'

import {
  type ConditionalHeaders,
  type EtagKind,
  type Validators,
  httpDate,
  ifRangeHolds,
  preconditions,
  strongEtag,
  validatorsOf,
  weakEtag,
} from '../lib/http/conditionals'

// The asctime form carries no zone: a zone west of UTC makes reading it as local time show.
process.env.TZ = 'America/New_York'

/** The file's Last-Modified, in each of the three HTTP-date forms (RFC 9110 §5.6.7). */
const MODIFIED = Date.UTC(1994, 10, 6, 8, 49, 37)
const IMF = 'Sun, 06 Nov 1994 08:49:37 GMT'
const RFC850 = 'Sunday, 06-Nov-94 08:49:37 GMT'
const ASCTIME = 'Sun Nov  6 08:49:37 1994'
const EARLIER = 'Sun, 06 Nov 1994 08:49:36 GMT'
const LATER = 'Sun, 06 Nov 1994 08:49:38 GMT'

const ETAG = '"2a-3e8-60a2418202208"'
const WEAK = 'W/"3e8-18bcfe5687b"'
const OTHER = '"2a-3e8-1"'
const BOTH: Validators = { etag: ETAG, modified: MODIFIED }

test('httpDate: the three HTTP-date forms, whatever the server time zone; anything else is undefined', (t) => {
  const cases: Array<[string | undefined, number | undefined]> = [
    [IMF, MODIFIED],
    [RFC850, MODIFIED],
    [ASCTIME, MODIFIED],
    ['Sun Nov 16 08:49:37 1994', MODIFIED + 10 * 86_400_000],
    [` ${IMF} `, MODIFIED],
    [undefined, undefined],
    ['', undefined],
    ['yesterday', undefined],
    // Date.parse takes '1' as 2001: an HTTP-date always has a time of day.
    ['1', undefined],
    ['1994-11-06', undefined],
    ['Sun, 06 Nov 1994 25:49:37 GMT', undefined],
    ['W/"3e8-1"', undefined],
  ]
  for (const [value, expected] of cases) t.is(httpDate(value), expected, JSON.stringify(value))
})

test('validators: a strong ETag from inode, size and mtime (µs), or a weak one from size and mtime (ms); Last-Modified in whole seconds; each only when sent', (t) => {
  const stats = { size: 1000, mtimeMs: 1700000000123.4, ino: 42 }
  t.is(strongEtag(stats), ETAG)
  t.is(strongEtag({ ...stats, ino: 43 }) === ETAG, false, 'a replaced file (another inode) has another tag')
  t.is(strongEtag({ ...stats, mtimeMs: 1700000000123.401 }) === ETAG, false, 'a microsecond later is another tag')
  t.is(weakEtag(1000, 1700000000123.4), WEAK)
  t.is(weakEtag(0, 0), 'W/"0-0"')
  const cases: Array<[{ etag: EtagKind; lastModified: boolean }, Validators]> = [
    [
      { etag: 'strong', lastModified: true },
      { etag: ETAG, modified: 1700000000000 },
    ],
    [
      { etag: 'weak', lastModified: true },
      { etag: WEAK, modified: 1700000000000 },
    ],
    [
      { etag: false, lastModified: true },
      { etag: undefined, modified: 1700000000000 },
    ],
    [
      { etag: 'strong', lastModified: false },
      { etag: ETAG, modified: undefined },
    ],
    [
      { etag: false, lastModified: false },
      { etag: undefined, modified: undefined },
    ],
  ]
  for (const [send, expected] of cases) t.deepEqual(validatorsOf(stats, send), expected, JSON.stringify(send))
})

interface PreconditionCase {
  method?: string
  headers: ConditionalHeaders
  validators?: Validators
  expected: 200 | 304 | 412
  why: string
}

const preconditionCases: PreconditionCase[] = [
  { headers: {}, expected: 200, why: 'no preconditions' },
  // If-Match (§13.1.1): the tag by strong comparison, a list, or *.
  { headers: { 'if-match': ETAG }, expected: 200, why: 'If-Match with the tag' },
  { headers: { 'if-match': `"x", ${ETAG}` }, expected: 200, why: 'If-Match with a list that has the tag' },
  { headers: { 'if-match': OTHER }, expected: 412, why: 'If-Match with another tag' },
  { headers: { 'if-match': `W/${ETAG}` }, expected: 412, why: 'If-Match compares strongly (§8.8.3.2): the weak form of the tag fails' },
  { headers: { 'if-match': WEAK }, validators: { etag: WEAK, modified: undefined }, expected: 412, why: 'a weak tag never matches strongly, even itself' },
  { headers: { 'if-match': '*' }, expected: 200, why: 'If-Match: * with a file' },
  { headers: { 'if-match': ' * ' }, expected: 200, why: 'If-Match: * with spaces' },
  { headers: { 'if-match': ETAG }, validators: { etag: undefined, modified: MODIFIED }, expected: 412, why: 'If-Match when no ETag is sent' },
  { headers: { 'if-match': 'garbage' }, expected: 412, why: 'If-Match without a tag matches nothing' },
  { headers: { 'if-match': '"a,b", W/"c"' }, validators: { etag: '"a,b"', modified: undefined }, expected: 200, why: 'a tag with a comma in it' },
  // If-Unmodified-Since (§13.1.4), only without If-Match.
  { headers: { 'if-unmodified-since': IMF }, expected: 200, why: 'If-Unmodified-Since the modification date' },
  { headers: { 'if-unmodified-since': LATER }, expected: 200, why: 'If-Unmodified-Since after it' },
  { headers: { 'if-unmodified-since': EARLIER }, expected: 412, why: 'If-Unmodified-Since before it' },
  { headers: { 'if-unmodified-since': 'Sunday, 06-Nov-94 08:49:36 GMT' }, expected: 412, why: 'If-Unmodified-Since in RFC 850 form' },
  { headers: { 'if-unmodified-since': 'Sun Nov  6 08:49:36 1994' }, expected: 412, why: 'If-Unmodified-Since in asctime form' },
  { headers: { 'if-unmodified-since': 'not a date' }, expected: 200, why: 'an invalid If-Unmodified-Since is ignored' },
  {
    headers: { 'if-unmodified-since': EARLIER },
    validators: { etag: ETAG, modified: undefined },
    expected: 200,
    why: 'If-Unmodified-Since when no Last-Modified is sent',
  },
  { headers: { 'if-match': ETAG, 'if-unmodified-since': EARLIER }, expected: 200, why: 'If-Match overrides If-Unmodified-Since (§13.2.2)' },
  // If-None-Match (§13.1.2): weak comparison, lists, *; 304 for GET and HEAD, 412 otherwise.
  { headers: { 'if-none-match': ETAG }, expected: 304, why: 'If-None-Match with the tag' },
  { method: 'HEAD', headers: { 'if-none-match': ETAG }, expected: 304, why: 'HEAD with If-None-Match' },
  { headers: { 'if-none-match': `W/${ETAG}` }, expected: 304, why: 'If-None-Match compares weakly: the weak form matches' },
  {
    headers: { 'if-none-match': '"3e8-18bcfe5687b"' },
    validators: { etag: WEAK, modified: undefined },
    expected: 304,
    why: 'and the strong form of a weak tag',
  },
  { headers: { 'if-none-match': `${OTHER}, ${ETAG}` }, expected: 304, why: 'If-None-Match with a list that has the tag' },
  { headers: { 'if-none-match': `${OTHER},"x"` }, expected: 200, why: 'If-None-Match with a list without it' },
  { headers: { 'if-none-match': '*' }, expected: 304, why: 'If-None-Match: *' },
  { headers: { 'if-none-match': ETAG }, validators: { etag: undefined, modified: MODIFIED }, expected: 200, why: 'If-None-Match when no ETag is sent' },
  { method: 'POST', headers: { 'if-none-match': ETAG }, expected: 412, why: 'If-None-Match matching on an unsafe method' },
  { method: 'DELETE', headers: { 'if-none-match': '*' }, expected: 412, why: 'If-None-Match: * on an unsafe method' },
  { method: 'POST', headers: { 'if-none-match': OTHER }, expected: 200, why: 'If-None-Match not matching on an unsafe method' },
  // If-Modified-Since (§13.1.3): GET and HEAD only, only without If-None-Match.
  { headers: { 'if-modified-since': IMF }, expected: 304, why: 'If-Modified-Since the modification date' },
  { headers: { 'if-modified-since': RFC850 }, expected: 304, why: 'If-Modified-Since in RFC 850 form' },
  { headers: { 'if-modified-since': ASCTIME }, expected: 304, why: 'If-Modified-Since in asctime form, read as UTC' },
  { headers: { 'if-modified-since': LATER }, expected: 304, why: 'If-Modified-Since after it' },
  { headers: { 'if-modified-since': EARLIER }, expected: 200, why: 'If-Modified-Since before it' },
  { headers: { 'if-modified-since': 'Sun Nov  6 08:49:36 1994' }, expected: 200, why: 'If-Modified-Since before it, asctime' },
  { headers: { 'if-modified-since': 'garbage' }, expected: 200, why: 'an invalid If-Modified-Since is ignored' },
  { headers: { 'if-modified-since': '1' }, expected: 200, why: 'a bare number is not a date' },
  { method: 'HEAD', headers: { 'if-modified-since': IMF }, expected: 304, why: 'HEAD with If-Modified-Since' },
  { method: 'POST', headers: { 'if-modified-since': IMF }, expected: 200, why: 'If-Modified-Since is ignored on an unsafe method' },
  {
    headers: { 'if-modified-since': IMF },
    validators: { etag: ETAG, modified: undefined },
    expected: 200,
    why: 'If-Modified-Since when no Last-Modified is sent',
  },
  { headers: { 'if-none-match': OTHER, 'if-modified-since': IMF }, expected: 200, why: 'If-None-Match overrides If-Modified-Since' },
  // The order of evaluation (§13.2.2): the 412 conditions first.
  { headers: { 'if-match': OTHER, 'if-none-match': ETAG }, expected: 412, why: 'If-Match fails before If-None-Match matches' },
  { headers: { 'if-unmodified-since': EARLIER, 'if-modified-since': IMF }, expected: 412, why: 'If-Unmodified-Since fails before If-Modified-Since' },
  { headers: { 'if-match': ETAG, 'if-none-match': ETAG }, expected: 304, why: 'both tag conditions on the same tag' },
]

test('preconditions: RFC 9110 §13.2.2 order, lists, *, weak tags, three date forms, invalid dates ignored, 304 for safe methods only', (t) => {
  for (const { method = 'GET', headers, validators = BOTH, expected, why } of preconditionCases)
    t.is(preconditions(method, headers, validators), expected, `${method} ${JSON.stringify(headers)}: ${why}`)
})

const ifRangeCases: Array<{ value: string | string[] | undefined; validators?: Validators; expected: boolean; why: string }> = [
  { value: undefined, expected: true, why: 'no If-Range' },
  { value: ETAG, expected: true, why: 'the exact ETag' },
  { value: ` ${ETAG} `, expected: true, why: 'the ETag with spaces around it' },
  { value: OTHER, expected: false, why: 'another ETag' },
  { value: `W/${ETAG}`, expected: false, why: 'the weak form of the tag: If-Range compares strongly' },
  { value: WEAK, validators: { etag: WEAK, modified: MODIFIED }, expected: false, why: 'a weak tag never holds, even the one sent (§13.1.5)' },
  { value: ETAG, validators: { etag: undefined, modified: MODIFIED }, expected: false, why: 'a tag when no ETag is sent' },
  { value: IMF, expected: true, why: 'exactly the Last-Modified date' },
  { value: RFC850, expected: true, why: 'the date in RFC 850 form' },
  { value: ASCTIME, expected: true, why: 'the date in asctime form' },
  { value: LATER, expected: false, why: 'a later date: If-Range wants the exact date' },
  { value: EARLIER, expected: false, why: 'an earlier date' },
  { value: IMF, validators: { etag: ETAG, modified: undefined }, expected: false, why: 'a date when no Last-Modified is sent' },
  { value: 'garbage', expected: false, why: 'neither a tag nor a date' },
  { value: '', expected: false, why: 'empty' },
  { value: [ETAG], expected: true, why: 'a header given as an array' },
]

test('ifRangeHolds: the ETag by strong comparison or exactly the Last-Modified date', (t) => {
  for (const { value, validators = BOTH, expected, why } of ifRangeCases) t.is(ifRangeHolds(value, validators), expected, `${JSON.stringify(value)}: ${why}`)
})
