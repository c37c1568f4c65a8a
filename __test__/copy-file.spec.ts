import test, { type ExecutionContext } from 'ava'
import { execFileSync, spawn } from 'node:child_process'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import * as tls from 'node:tls'
import { pathToFileURL } from 'node:url'

import { copyFile, copyFileSync, socketFd, transferChannel, type TransferReport } from '..'
import { byteAtPosition, errno, linuxTest, openFdCount, openForTest, pattern, sha256, tcpPair, tempDir, tick, writeFixture } from './helpers'
import { within } from './socket-fixtures'

const MiB = 1024 * 1024
const CHUNK = 2 * MiB

type Destination = string | URL | fs.promises.FileHandle | number
type Source = Destination
type Options = Parameters<typeof copyFile>[2]

/** The two forms behind one signature, so that each behaviour is checked for both. */
interface Copier {
  name: 'copyFile' | 'copyFileSync'
  copy(source: Source, destination: Destination, options?: Options): Promise<number>
}

const copiers: Copier[] = [
  { name: 'copyFile', copy: (source, destination, options) => copyFile(source, destination, options) },
  {
    name: 'copyFileSync',
    copy: async (source, destination, options) => {
      const { signal: _signal, onProgress: _onProgress, ...syncOptions } = options ?? {}
      return copyFileSync(source as string | URL | number, destination as string | URL | number, options === undefined ? undefined : syncOptions)
    },
  },
]

/** Reports published on transferChannel for one destination (tests run concurrently: filter by target). */
function captureReports(t: ExecutionContext): (target: unknown) => TransferReport[] {
  const reports: TransferReport[] = []
  const listener = (report: TransferReport) => reports.push(report)
  transferChannel.subscribe(listener)
  t.teardown(() => {
    transferChannel.unsubscribe(listener)
  })
  return (target) => reports.filter((report) => report.target === target)
}

/** A fresh directory on /dev/shm (a tmpfs, so another filesystem than the temp dir), removed when the test ends. */
function shmDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join('/dev/shm', 'sendfile-copy-test-'))
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function openHandle(t: ExecutionContext, file: string, flags: string): Promise<fs.promises.FileHandle> {
  const handle = await fs.promises.open(file, flags)
  t.teardown(() => handle.close().catch(() => {}))
  return handle
}

/** The bytes of `[offset, offset + length)` of `contents` (length undefined: to the end). */
function slice(contents: Buffer, offset: number, length: number | undefined): Buffer {
  return contents.subarray(offset, length === undefined ? undefined : offset + length)
}

/** Polls until `condition` holds, at most `attempts` × 20 ms; returns whether it did. */
async function eventually(condition: () => boolean, attempts = 250): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    if (condition()) return true
    await tick(20)
  }
  return condition()
}

function readAt(fd: number, position: number, length: number): Buffer {
  const buffer = Buffer.alloc(length)
  const read = fs.readSync(fd, buffer, 0, length, position)
  return buffer.subarray(0, read)
}

function modeOf(file: string): number {
  return fs.statSync(file).mode & 0o7777
}

// ---------------------------------------------------------------------------------------------
// Sizes × lengths × offsets.

const SIZES = [1, 42, 1025, 4097, 32769]

for (const copier of copiers) {
  const destinationKinds: Array<{ name: string; open(t: ExecutionContext, file: string): Promise<Destination> }> = [
    { name: 'a new path', open: async (_t, file) => file },
    { name: 'an fd', open: async (t, file) => openForTest(t, file, 'w+') },
  ]
  if (copier.name === 'copyFile') destinationKinds.push({ name: 'a FileHandle', open: (t, file) => openHandle(t, file, 'w+') })

  for (const size of SIZES) {
    for (const kind of destinationKinds) {
      test(`${copier.name} copies ${size}-byte files exactly into ${kind.name}, for every length (none, n-1, n/2, n+7) and offset (0, 1)`, async (t) => {
        const dir = tempDir(t)
        const contents = pattern(size, size)
        const source = writeFixture(dir, 'source', contents)
        for (const length of [undefined, size - 1, Math.floor(size / 2), size + 7]) {
          for (const offset of [0, 1]) {
            const label = `size ${size}, offset ${offset}, length ${length}`
            const file = path.join(dir, `copy-${offset}-${length}`)
            const destination = await kind.open(t, file)
            const expected = slice(contents, offset, length)
            const options = length === undefined ? { offset } : { offset, length }
            t.is(await copier.copy(source, destination, options), expected.length, `returned count, ${label}`)
            const copied = fs.readFileSync(file)
            t.is(copied.length, expected.length, `destination size, ${label}`)
            t.is(sha256(copied), sha256(expected), `destination bytes, ${label}`)
          }
        }
      })
    }
  }
}

for (const copier of copiers) {
  linuxTest(`${copier.name} with length 0 copies nothing and returns 0`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(1000, 3)
    const source = writeFixture(dir, 'source', contents)
    const destination = path.join(dir, 'copy')
    t.is(await copier.copy(source, destination, { length: 0 }), 0)
    t.is(fs.statSync(destination).size, 0, 'a new destination path stays empty')
    t.is(await copier.copy(source, destination, { offset: 500, length: 0 }), 0)
    t.is(fs.statSync(destination).size, 0)

    const existing = writeFixture(dir, 'existing', pattern(100, 4))
    const fd = openForTest(t, existing, 'r+')
    t.is(await copier.copy(source, fd, { length: 0, destinationOffset: 10 }), 0)
    t.is(sha256(fs.readFileSync(existing)), sha256(pattern(100, 4)), 'an fd destination is not written')

    const fromProc = path.join(dir, 'from-proc')
    t.is(await copier.copy('/proc/self/cmdline', fromProc, { length: 0 }), 0, 'a /proc source (size 0 reported)')
    t.is(fs.statSync(fromProc).size, 0)
  })

  test(`${copier.name} copies an empty file to an empty destination, and an offset at or past end of file copies 0 bytes`, async (t) => {
    const dir = tempDir(t)
    const empty = writeFixture(dir, 'empty', Buffer.alloc(0))
    const small = writeFixture(dir, 'small', pattern(100, 5))
    t.is(await copier.copy(empty, path.join(dir, 'a')), 0)
    t.is(fs.statSync(path.join(dir, 'a')).size, 0)
    t.is(await copier.copy(small, path.join(dir, 'b'), { offset: 100 }), 0)
    t.is(await copier.copy(small, path.join(dir, 'c'), { offset: 2 ** 40, length: 10 }), 0)
    t.is(await copier.copy(small, path.join(dir, 'd'), { offset: Number.MAX_SAFE_INTEGER }), 0)
    for (const name of ['b', 'c', 'd']) t.is(fs.statSync(path.join(dir, name)).size, 0, name)
  })
}

// ---------------------------------------------------------------------------------------------
// Methods: copy_file_range, then sendfile, then read/write across filesystems.

for (const copier of copiers) {
  linuxTest(`${copier.name} within one filesystem copies with copy_file_range and reports it zero-copy`, async (t) => {
    const reportsFor = captureReports(t)
    const dir = tempDir(t)
    const contents = pattern(5 * MiB + 3, 6)
    const source = writeFixture(dir, 'source', contents)
    const destination = path.join(dir, 'copy')
    t.is(await copier.copy(source, destination), contents.length)
    t.is(sha256(fs.readFileSync(destination)), sha256(contents))
    const reports = reportsFor(destination)
    t.is(reports.length, 1, 'one report per call')
    t.like(reports[0], { operation: copier.name, method: 'copy_file_range', zeroCopy: true, bytes: contents.length })
    t.is(reports[0].error, undefined)
  })

  for (const direction of ['temp dir → /dev/shm', '/dev/shm → temp dir'] as const) {
    test(`${copier.name} across filesystems (${direction}, EXDEV) copies exact bytes: sendfile into a path, read/write into an fd`, async (t) => {
      let reportsFor = captureReports(t)
      const [from, to] = direction === 'temp dir → /dev/shm' ? [tempDir(t), shmDir(t)] : [shmDir(t), tempDir(t)]
      const contents = pattern(5 * MiB + 3, 7)
      const source = writeFixture(from, 'source', contents)

      // A path destination: copy_file_range refuses the pair, sendfile (zero-copy) serves.
      const destination = path.join(to, 'copy')
      t.is(await copier.copy(source, destination), contents.length)
      t.is(sha256(fs.readFileSync(destination)), sha256(contents))
      t.like(reportsFor(destination)[0], { operation: copier.name, method: 'sendfile', zeroCopy: true, bytes: contents.length })

      // A range of it into the middle of an existing file through its fd: sendfile would move the
      // fd's position, so read/write (pread/pwrite) serves.
      const existing = pattern(6 * MiB, 8)
      const target = writeFixture(to, 'existing', existing)
      const fd = openForTest(t, target, 'r+')
      fs.readSync(fd, Buffer.alloc(7), 0, 7, null) // position 7
      // Subscribed again now that the fd is open: a report for the same number from an earlier, closed fd is not ours.
      reportsFor = captureReports(t)
      const offset = 12_345
      const length = 3 * MiB + 11
      const at = 1 * MiB + 1
      t.is(await copier.copy(source, fd, { offset, length, destinationOffset: at }), length)
      const expected = Buffer.from(existing)
      contents.copy(expected, at, offset, offset + length)
      t.is(sha256(fs.readFileSync(target)), sha256(expected))
      t.is(byteAtPosition(fd), expected[7], 'the fd position did not move')
      t.like(reportsFor(fd)[0], { operation: copier.name, method: 'read_write', zeroCopy: false, bytes: length })
    })
  }
}

// ---------------------------------------------------------------------------------------------
// Path destinations: created or truncated like fs.copyFile.

for (const copier of copiers) {
  test(`${copier.name} truncates a longer existing destination path to the copied bytes`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(10_000, 9)
    const source = writeFixture(dir, 'source', contents)
    const destination = writeFixture(dir, 'destination', pattern(50_000, 10))
    t.is(await copier.copy(source, destination), contents.length)
    t.is(sha256(fs.readFileSync(destination)), sha256(contents))

    writeFixture(dir, 'destination', pattern(50_000, 10))
    t.is(await copier.copy(source, destination, { offset: 100, length: 200 }), 200)
    t.is(sha256(fs.readFileSync(destination)), sha256(contents.subarray(100, 300)))
  })

  test(`${copier.name} into a path at a destinationOffset leaves zeros before the bytes`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(3000, 11)
    const source = writeFixture(dir, 'source', contents)
    const destination = writeFixture(dir, 'destination', pattern(9000, 12))
    t.is(await copier.copy(source, destination, { offset: 10, length: 1000, destinationOffset: 4096 }), 1000)
    t.is(sha256(fs.readFileSync(destination)), sha256(Buffer.concat([Buffer.alloc(4096), contents.subarray(10, 1010)])))
  })

  test(`${copier.name} gives a destination path the source's permissions, like fs.copyFile`, async (t) => {
    const dir = tempDir(t)
    for (const mode of [0o640, 0o600, 0o755, 0o777]) {
      const source = writeFixture(dir, `source-${mode.toString(8)}`, pattern(100, mode))
      fs.chmodSync(source, mode)
      const created = path.join(dir, `created-${mode.toString(8)}`)
      await copier.copy(source, created)
      t.is(modeOf(created).toString(8), mode.toString(8), 'a new destination')

      const reference = path.join(dir, `fs-${mode.toString(8)}`)
      fs.copyFileSync(source, reference)
      t.is(modeOf(created), modeOf(reference), 'the same mode as fs.copyFileSync gives')

      const existing = writeFixture(dir, `existing-${mode.toString(8)}`, pattern(10, 1))
      fs.chmodSync(existing, 0o604)
      await copier.copy(source, existing)
      const existingReference = writeFixture(dir, `fs-existing-${mode.toString(8)}`, pattern(10, 1))
      fs.chmodSync(existingReference, 0o604)
      fs.copyFileSync(source, existingReference)
      t.is(modeOf(existing).toString(8), modeOf(existingReference).toString(8), 'an existing destination, as fs.copyFileSync leaves it')
    }
  })

  test(`${copier.name} with COPYFILE_EXCL fails with EEXIST on an existing destination and leaves it alone`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(1000, 13)
    const source = writeFixture(dir, 'source', contents)
    const old = pattern(5000, 14)
    const existing = writeFixture(dir, 'existing', old)
    const error = (await t.throwsAsync(copier.copy(source, existing, { mode: fs.constants.COPYFILE_EXCL }))) as NodeJS.ErrnoException
    t.is(error.code, 'EEXIST')
    t.is(error.errno, errno('EEXIST'))
    t.is(sha256(fs.readFileSync(existing)), sha256(old), 'not truncated')

    const fresh = path.join(dir, 'fresh')
    t.is(await copier.copy(source, fresh, { mode: fs.constants.COPYFILE_EXCL }), contents.length)
    t.is(sha256(fs.readFileSync(fresh)), sha256(contents))
    // COPYFILE_FICLONE asks for a reflink if possible, and copies otherwise.
    t.is(await copier.copy(source, fresh, { mode: fs.constants.COPYFILE_FICLONE }), contents.length)
    t.is(sha256(fs.readFileSync(fresh)), sha256(contents))
  })

  test(`${copier.name} accepts file: URLs for both source and destination`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(7000, 15)
    const source = writeFixture(dir, 'source with space', contents)
    const destination = path.join(dir, 'copy with space')
    t.is(await copier.copy(pathToFileURL(source), pathToFileURL(destination), { offset: 3, length: 5000 }), 5000)
    t.is(sha256(fs.readFileSync(destination)), sha256(contents.subarray(3, 5003)))
  })
}

// ---------------------------------------------------------------------------------------------
// fd and FileHandle ends: written in place, positions kept, never closed.

for (const copier of copiers) {
  test(`${copier.name} writes into an fd destination at destinationOffset without truncating it or moving either position`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(100_000, 16)
    const old = pattern(300_000, 17)
    const sourceFd = openForTest(t, writeFixture(dir, 'source', contents))
    const target = writeFixture(dir, 'destination', old)
    const destinationFd = openForTest(t, target, 'r+')
    fs.readSync(sourceFd, Buffer.alloc(1000), 0, 1000, null) // source position 1000
    fs.readSync(destinationFd, Buffer.alloc(2000), 0, 2000, null) // destination position 2000

    const expected = Buffer.from(old)
    t.is(await copier.copy(sourceFd, destinationFd, { offset: 5000, length: 40_000, destinationOffset: 150_000 }), 40_000)
    contents.copy(expected, 150_000, 5000, 45_000)
    t.is(sha256(fs.readFileSync(target)), sha256(expected), 'only the range changed')

    // The default destinationOffset is 0, and the rest of the file stays.
    t.is(await copier.copy(sourceFd, destinationFd, { length: 3000 }), 3000)
    contents.copy(expected, 0, 0, 3000)
    t.is(sha256(fs.readFileSync(target)), sha256(expected), 'written at 0, not truncated')

    // Past the end: the file grows.
    t.is(await copier.copy(sourceFd, destinationFd, { offset: 99_000, destinationOffset: 299_500 }), 1000)
    const grown = Buffer.concat([expected.subarray(0, 299_500), contents.subarray(99_000)])
    t.is(sha256(fs.readFileSync(target)), sha256(grown), 'grown past its old end')

    t.is(byteAtPosition(sourceFd), contents[1000], 'source position unchanged')
    t.is(byteAtPosition(destinationFd), grown[2000], 'destination position unchanged')
    t.true(fs.fstatSync(sourceFd).isFile() && fs.fstatSync(destinationFd).isFile(), 'both fds still open')
  })

  test(`${copier.name} writing past the end of an fd destination leaves a hole of zeros`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(500, 18)
    const source = writeFixture(dir, 'source', contents)
    const target = writeFixture(dir, 'destination', Buffer.from('head'))
    const fd = openForTest(t, target, 'r+')
    t.is(await copier.copy(source, fd, { destinationOffset: 1 * MiB }), 500)
    t.is(sha256(fs.readFileSync(target)), sha256(Buffer.concat([Buffer.from('head'), Buffer.alloc(MiB - 4), contents])))
  })

  test(`${copier.name} from an fd source at its position copies from the offset, not the position, and keeps the fd open`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(20_000, 19)
    const fd = openForTest(t, writeFixture(dir, 'source', contents))
    fs.readSync(fd, Buffer.alloc(5000), 0, 5000, null)
    const destination = path.join(dir, 'copy')
    t.is(await copier.copy(fd, destination), contents.length, 'no offset: from byte 0, not from the position')
    t.is(sha256(fs.readFileSync(destination)), sha256(contents))
    t.is(byteAtPosition(fd), contents[5000])
    t.is(await copier.copy(fd, destination, { offset: 19_990 }), 10)
    t.is(sha256(fs.readFileSync(destination)), sha256(contents.subarray(19_990)))
    t.is(byteAtPosition(fd), contents[5001])
  })
}

test('copyFile with FileHandle source and destination writes in place, keeps both positions and leaves both handles open', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(3 * MiB + 5, 20)
  const old = pattern(4 * MiB, 21)
  const source = await openHandle(t, writeFixture(dir, 'source', contents), 'r')
  const target = writeFixture(dir, 'destination', old)
  const destination = await openHandle(t, target, 'r+')
  await source.read(Buffer.alloc(10), 0, 10, null) // position 10
  await destination.read(Buffer.alloc(20), 0, 20, null) // position 20

  t.is(await copyFile(source, destination, { offset: 7, length: 2 * MiB + 9, destinationOffset: 100 }), 2 * MiB + 9)
  const expected = Buffer.from(old)
  contents.copy(expected, 100, 7, 7 + 2 * MiB + 9)
  t.is(sha256(fs.readFileSync(target)), sha256(expected))
  t.is(byteAtPosition(source.fd), contents[10], 'source position unchanged')
  t.is(byteAtPosition(destination.fd), expected[20], 'destination position unchanged')
  t.true((await source.stat()).isFile(), 'source handle still open')
  t.true((await destination.stat()).isFile(), 'destination handle still open')
})

test('copyFileSync refuses a FileHandle with ERR_INVALID_ARG_TYPE', async (t) => {
  const dir = tempDir(t)
  const file = writeFixture(dir, 'source', pattern(10))
  const handle = await openHandle(t, file, 'r+')
  const call = copyFileSync as (...args: unknown[]) => number
  t.throws(() => call(handle, path.join(dir, 'copy')), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
  t.throws(() => call(file, handle), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' })
})

// ---------------------------------------------------------------------------------------------
// A file onto itself.

for (const copier of copiers) {
  test(`${copier.name} of a file onto its own path (and through a hard link and a symlink) returns its size and never truncates it`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(3 * MiB + 1, 22)
    const file = writeFixture(dir, 'self', contents)
    const link = path.join(dir, 'hard-link')
    fs.linkSync(file, link)
    const symlink = path.join(dir, 'symlink')
    fs.symlinkSync(file, symlink)
    for (const destination of [file, link, symlink, pathToFileURL(file)]) {
      t.is(await copier.copy(file, destination), contents.length, `onto ${destination}`)
      t.is(sha256(fs.readFileSync(file)), sha256(contents), `unchanged after copying onto ${destination}`)
    }
    t.is(await copier.copy(file, file, { offset: 100, length: 1000, destinationOffset: 100 }), 1000, 'the same range')
    t.is(sha256(fs.readFileSync(file)), sha256(contents))
    const error = (await t.throwsAsync(copier.copy(file, file, { mode: fs.constants.COPYFILE_EXCL }))) as NodeJS.ErrnoException
    t.is(error.code, 'EEXIST')
    t.is(sha256(fs.readFileSync(file)), sha256(contents), 'unchanged after EEXIST')
  })

  test(`${copier.name} of a file onto itself through fds: the same range is a no-op returning its length`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(100_000, 23)
    const file = writeFixture(dir, 'self', contents)
    const reader = openForTest(t, file, 'r')
    const writer = openForTest(t, file, 'r+')
    t.is(await copier.copy(reader, writer), contents.length, 'whole file, two fds')
    t.is(await copier.copy(writer, writer), contents.length, 'whole file, one fd')
    t.is(await copier.copy(reader, writer, { offset: 5000, length: 7000, destinationOffset: 5000 }), 7000)
    t.is(await copier.copy(reader, writer, { offset: 99_000, length: 5000, destinationOffset: 99_000 }), 1000, 'past the end: what exists')
    t.is(await copier.copy(reader, file, { offset: 10, destinationOffset: 10 }), contents.length - 10, 'fd source, path destination')
    t.is(sha256(fs.readFileSync(file)), sha256(contents))
    t.is(fs.statSync(file).size, contents.length)
  })

  test(`${copier.name} of overlapping ranges within one file fails with EINVAL and leaves the file unchanged`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(100_000, 24)
    const file = writeFixture(dir, 'self', contents)
    const reader = openForTest(t, file, 'r')
    const writer = openForTest(t, file, 'r+')
    const cases: Array<[Source, Destination, Options]> = [
      [reader, writer, { offset: 0, length: 1000, destinationOffset: 999 }],
      [reader, writer, { offset: 1000, length: 1000, destinationOffset: 1 }],
      [writer, writer, { offset: 0, destinationOffset: 1 }],
      [file, file, { offset: 50_000, length: 20_000, destinationOffset: 60_000 }],
      [file, file, { offset: 1, destinationOffset: 0 }],
    ]
    for (const [source, destination, options] of cases) {
      const label = `${typeof source === 'number' ? 'fd' : 'path'} ${JSON.stringify(options)}`
      const error = (await t.throwsAsync(copier.copy(source, destination, options), undefined, label)) as NodeJS.ErrnoException
      t.is(error?.code, 'EINVAL', label)
      t.is(error?.errno, errno('EINVAL'), label)
      t.is(sha256(fs.readFileSync(file)), sha256(contents), `unchanged: ${label}`)
    }
  })

  test(`${copier.name} of non-overlapping ranges within one file copies them exactly`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(3 * MiB, 25)
    const file = writeFixture(dir, 'self', contents)
    const reader = openForTest(t, file, 'r')
    const writer = openForTest(t, file, 'r+')
    const expected = Buffer.from(contents)

    t.is(await copier.copy(reader, writer, { offset: 0, length: 1 * MiB, destinationOffset: 2 * MiB }), 1 * MiB, 'forwards')
    expected.copy(expected, 2 * MiB, 0, 1 * MiB)
    t.is(sha256(fs.readFileSync(file)), sha256(expected))

    t.is(await copier.copy(reader, writer, { offset: 1 * MiB + 5, length: 100_000, destinationOffset: 7 }), 100_000, 'backwards')
    expected.copy(expected, 7, 1 * MiB + 5, 1 * MiB + 5 + 100_000)
    t.is(sha256(fs.readFileSync(file)), sha256(expected))

    t.is(await copier.copy(file, file, { offset: 500, length: 500, destinationOffset: 1000 }), 500, 'adjacent, by path')
    expected.copy(expected, 1000, 500, 1000)
    t.is(sha256(fs.readFileSync(file)), sha256(expected))

    t.is(await copier.copy(reader, writer, { offset: 10, length: 1000, destinationOffset: 3 * MiB }), 1000, 'appending to itself')
    const grown = Buffer.concat([expected, expected.subarray(10, 1010)])
    t.is(sha256(fs.readFileSync(file)), sha256(grown))
  })
}

// ---------------------------------------------------------------------------------------------
// Files that report size 0.

for (const copier of copiers) {
  linuxTest(`${copier.name} copies the real content of /proc files, which report size 0`, async (t) => {
    const reportsFor = captureReports(t)
    const dir = tempDir(t)
    for (const procFile of ['/proc/self/cmdline', '/proc/version', '/proc/self/environ']) {
      t.is(fs.statSync(procFile).size, 0, `${procFile} reports size 0`)
      const expected = fs.readFileSync(procFile)
      t.true(expected.length > 0)
      const destination = path.join(dir, path.basename(procFile))
      t.is(await copier.copy(procFile, destination), expected.length, procFile)
      t.is(sha256(fs.readFileSync(destination)), sha256(expected), procFile)
      t.like(reportsFor(destination)[0], { bytes: expected.length, error: undefined })

      t.is(await copier.copy(procFile, destination, { offset: 2, length: 5 }), Math.min(5, expected.length - 2), `${procFile} range`)
      t.is(sha256(fs.readFileSync(destination)), sha256(expected.subarray(2, 7)))
    }
    const fd = openForTest(t, path.join(dir, 'into-fd'), 'w+')
    const cmdline = fs.readFileSync('/proc/self/cmdline')
    t.is(await copier.copy('/proc/self/cmdline', fd, { destinationOffset: 3 }), cmdline.length)
    t.is(sha256(fs.readFileSync(path.join(dir, 'into-fd'))), sha256(Buffer.concat([Buffer.alloc(3), cmdline])))
  })
}

linuxTest('copyFile from a /proc file reports progress with total -1 and ends at the bytes copied', async (t) => {
  const dir = tempDir(t)
  const expected = fs.readFileSync('/proc/self/cmdline')
  const calls: Array<[number, number]> = []
  const copied = await copyFile('/proc/self/cmdline', path.join(dir, 'cmdline'), { onProgress: (bytes, total) => calls.push([bytes, total]) })
  t.is(copied, expected.length)
  t.true(calls.length >= 1)
  t.deepEqual(calls[calls.length - 1], [expected.length, -1])
})

// ---------------------------------------------------------------------------------------------
// Progress.

for (const where of ['within one filesystem', 'across filesystems into a path', 'across filesystems into an fd'] as const) {
  test(`copyFile progress ${where} is cumulative, increasing, at least once per 2 MiB chunk, and ends at the total`, async (t) => {
    const dir = tempDir(t)
    const to = where === 'within one filesystem' ? dir : shmDir(t)
    const contents = pattern(20 * MiB + 5, 26)
    const source = writeFixture(dir, 'source', contents)
    const file = path.join(to, 'copy')
    const destination = where === 'across filesystems into an fd' ? openForTest(t, file, 'w+') : file

    for (const range of [{}, { offset: 3, length: 9 * MiB + 1 }] as Array<{ offset?: number; length?: number }>) {
      const total = slice(contents, range.offset ?? 0, range.length).length
      const calls: Array<[number, number]> = []
      const copied = await copyFile(source, destination, { ...range, onProgress: (bytes, reportedTotal) => calls.push([bytes, reportedTotal]) })
      const label = JSON.stringify(range)
      t.is(copied, total, label)
      t.true(calls.length >= Math.ceil(total / CHUNK), `${calls.length} calls for ${total} bytes, ${label}`)
      t.true(
        calls.every(([, reportedTotal]) => reportedTotal === total),
        `total is ${total} in every call, ${label}`,
      )
      t.true(
        calls.every(([bytes], i) => bytes > 0 && (i === 0 || bytes > calls[i - 1][0])),
        `strictly increasing, ${label}`,
      )
      t.deepEqual(calls[calls.length - 1], [total, total], `last call, ${label}`)
      t.is(sha256(fs.readFileSync(file).subarray(0, total)), sha256(slice(contents, range.offset ?? 0, range.length)), label)
    }
  })
}

test('copyFile of a small file calls onProgress once, with the total', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source', pattern(4097, 27))
  const calls: Array<[number, number]> = []
  t.is(await copyFile(source, path.join(dir, 'copy'), { offset: 1, onProgress: (bytes, total) => calls.push([bytes, total]) }), 4096)
  t.deepEqual(calls, [[4096, 4096]])
})

test('copyFile rejects with the error an onProgress callback throws', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source', pattern(6 * MiB, 28))
  const thrown = new Error('progress says stop')
  const error = await t.throwsAsync(
    copyFile(source, path.join(dir, 'copy'), {
      onProgress: () => {
        throw thrown
      },
    }),
  )
  t.is(error, thrown)
})

// ---------------------------------------------------------------------------------------------
// Abort. Serial: they compare the process's open fd count with a baseline.

linuxTest.serial('copyFile with an already-aborted signal rejects with AbortError and opens or creates nothing', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(10_000, 29)
  const source = writeFixture(dir, 'source', contents)
  const existing = writeFixture(dir, 'existing', pattern(500, 30))
  const sourceFd = openForTest(t, source)
  const controller = new AbortController()
  const reason = new Error('cancelled by the test')
  controller.abort(reason)
  const baseline = openFdCount()

  for (const [source_, destination] of [
    [source, path.join(dir, 'never-created')],
    [source, existing],
    [sourceFd, existing],
    [path.join(dir, 'missing-source'), path.join(dir, 'never-created-either')],
  ] as Array<[Source, Destination]>) {
    let promise: Promise<number> | undefined
    t.notThrows(() => {
      promise = copyFile(source_, destination, { signal: controller.signal })
    })
    const error = (await t.throwsAsync(promise!)) as NodeJS.ErrnoException
    t.is(error.name, 'AbortError')
    t.is(error.code, 'ABORT_ERR')
    t.is(error.cause, reason)
  }
  t.is(openFdCount(), baseline, 'no fd opened')
  t.false(fs.existsSync(path.join(dir, 'never-created')))
  t.false(fs.existsSync(path.join(dir, 'never-created-either')))
  t.is(sha256(fs.readFileSync(existing)), sha256(pattern(500, 30)), 'an existing destination is not truncated')
  t.is(byteAtPosition(sourceFd), contents[0])
})

for (const where of ['within one filesystem into a path', 'across filesystems into an fd'] as const) {
  linuxTest.serial(`copyFile aborted during a 64 MiB copy ${where} rejects with AbortError and closes every fd it opened`, async (t) => {
    const dir = tempDir(t)
    const to = where === 'within one filesystem into a path' ? dir : shmDir(t)
    const source = path.join(dir, 'big')
    const block = pattern(1 * MiB, 31)
    const writer = fs.openSync(source, 'w')
    for (let i = 0; i < 64; i++) fs.writeSync(writer, block)
    fs.closeSync(writer)
    const file = path.join(to, 'copy')
    const destination = where === 'across filesystems into an fd' ? openForTest(t, file, 'w+') : file
    const reportsFor = captureReports(t)
    const baseline = openFdCount()

    const controller = new AbortController()
    const calls: number[] = []
    const error = (await t.throwsAsync(
      copyFile(source, destination, {
        signal: controller.signal,
        onProgress: (bytes) => {
          calls.push(bytes)
          // Abort after the first chunk: the copy is under way.
          if (!controller.signal.aborted) controller.abort()
        },
      }),
    )) as NodeJS.ErrnoException & { bytesSent?: number }
    t.is(error.name, 'AbortError')
    t.is(error.code, 'ABORT_ERR')
    t.true(calls.length >= 1)
    t.log(`aborted after ${calls[0]} bytes; ${error.bytesSent} bytes reported copied`)
    const report = reportsFor(destination)[0]
    t.is(report?.error, error, 'the report carries the AbortError')
    // A blocking copy step under way when the abort came finishes its chunk on its own thread.
    t.true(await eventually(() => openFdCount() <= baseline), `fds back to the baseline (${baseline}, now ${openFdCount()})`)
    t.true(fs.fstatSync(typeof destination === 'number' ? destination : openForTest(t, file)).isFile(), 'a caller fd stays open')
  })
}

linuxTest.serial('copyFile and copyFileSync leave the fd count where it was, after successes and failures alike', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source', pattern(3 * MiB, 32))
  const baseline = openFdCount()
  await copyFile(source, path.join(dir, 'a'))
  copyFileSync(source, path.join(dir, 'b'))
  await copyFile(source, path.join(shmDir(t), 'c'))
  await t.throwsAsync(copyFile(path.join(dir, 'missing'), path.join(dir, 'd')))
  t.throws(() => copyFileSync(path.join(dir, 'missing'), path.join(dir, 'd')))
  await t.throwsAsync(copyFile(source, source, { offset: 0, destinationOffset: 1 }))
  t.throws(() => copyFileSync(source, source, { offset: 0, destinationOffset: 1 }))
  await t.throwsAsync(copyFile(source, path.join(dir, 'a'), { mode: fs.constants.COPYFILE_EXCL }))
  await t.throwsAsync(copyFile(dir, path.join(dir, 'e')))
  t.true(await eventually(() => openFdCount() <= baseline), `fds back to the baseline (${baseline}, now ${openFdCount()})`)
})

test('aborting after copyFile has resolved changes nothing', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(100_000, 33)
  const source = writeFixture(dir, 'source', contents)
  const controller = new AbortController()
  const destination = path.join(dir, 'copy')
  t.is(await copyFile(source, destination, { signal: controller.signal }), contents.length)
  controller.abort()
  await tick(10)
  t.is(sha256(fs.readFileSync(destination)), sha256(contents))
})

// ---------------------------------------------------------------------------------------------
// Beyond 4 GiB.

for (const copier of copiers) {
  test(`${copier.name} copies a range near and above 2^32 of a sparse file exactly, to offsets above 2^32`, async (t) => {
    const dir = tempDir(t)
    const file = path.join(dir, 'sparse')
    const writable = openForTest(t, file, 'w+')
    fs.ftruncateSync(writable, 2 ** 32 + 2 * MiB)
    const marker = Buffer.from('a marker written above 2^32 bytes')
    const markerAt = 2 ** 32 + 123_457
    fs.writeSync(writable, marker, 0, marker.length, markerAt)
    const straddle = Buffer.from('this marker straddles the 2^32 boundary')
    const straddleAt = 2 ** 32 - 10
    fs.writeSync(writable, straddle, 0, straddle.length, straddleAt)
    const reportsFor = captureReports(t)

    for (const to of [dir, shmDir(t)]) {
      // Into a new sparse path, above 2^32.
      const destination = path.join(to, `copy-${copier.name}`)
      const at = 2 ** 32 + 7
      t.is(await copier.copy(file, destination, { offset: markerAt - 100, length: 1000, destinationOffset: at }), 1000)
      const fd = openForTest(t, destination)
      t.is(fs.fstatSync(fd).size, at + 1000)
      t.true(readAt(fd, at, 1000).equals(Buffer.concat([Buffer.alloc(100), marker, Buffer.alloc(900 - marker.length)])), `above 2^32 into ${to}`)
      t.true(readAt(fd, 2 ** 31, 16).equals(Buffer.alloc(16)), 'zeros before')
      t.log(`${to}: ${reportsFor(destination)[0]?.method}`)

      // Across the boundary, into an fd at a low offset.
      const low = openForTest(t, path.join(to, `low-${copier.name}`), 'w+')
      t.is(await copier.copy(file, low, { offset: straddleAt - 1, length: straddle.length + 2, destinationOffset: 3 }), straddle.length + 2)
      t.true(readAt(low, 0, straddle.length + 5).equals(Buffer.concat([Buffer.alloc(4), straddle, Buffer.alloc(1)])), `across 2^32 into ${to}`)
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Errors.

for (const copier of copiers) {
  test(`${copier.name} of a missing source fails with ENOENT naming the path and creates no destination`, async (t) => {
    const reportsFor = captureReports(t)
    const dir = tempDir(t)
    const missing = path.join(dir, 'missing')
    const destination = path.join(dir, 'copy')
    const error = (await t.throwsAsync(copier.copy(missing, destination))) as NodeJS.ErrnoException
    t.like(error, { code: 'ENOENT', errno: errno('ENOENT'), path: missing })
    t.false(fs.existsSync(destination))
    t.like(reportsFor(destination)[0], { operation: copier.name, bytes: 0, zeroCopy: false, error })

    const viaUrl = (await t.throwsAsync(copier.copy(pathToFileURL(missing), destination))) as NodeJS.ErrnoException
    t.like(viaUrl, { code: 'ENOENT', path: missing })
  })

  test(`${copier.name} into a missing directory fails with ENOENT`, async (t) => {
    const dir = tempDir(t)
    const source = writeFixture(dir, 'source', pattern(10))
    const error = (await t.throwsAsync(copier.copy(source, path.join(dir, 'no-such-dir', 'copy')))) as NodeJS.ErrnoException
    t.is(error.code, 'ENOENT')
  })

  test(`${copier.name} of a directory fails with EISDIR, as a path and as an fd, and creates no destination`, async (t) => {
    const dir = tempDir(t)
    const destination = path.join(dir, 'copy')
    const fromPath = (await t.throwsAsync(copier.copy(dir, destination))) as NodeJS.ErrnoException
    t.is(fromPath.code, 'EISDIR')
    t.is(fromPath.errno, errno('EISDIR'))
    t.is(fromPath.path, dir)
    const dirFd = openForTest(t, dir, 'r')
    const fromFd = (await t.throwsAsync(copier.copy(dirFd, destination))) as NodeJS.ErrnoException
    t.is(fromFd.code, 'EISDIR')
    t.false(fs.existsSync(destination))
  })

  test(`${copier.name} onto a directory fails with EISDIR`, async (t) => {
    const dir = tempDir(t)
    const source = writeFixture(dir, 'source', pattern(10))
    const target = path.join(dir, 'a-directory')
    fs.mkdirSync(target)
    const error = (await t.throwsAsync(copier.copy(source, target))) as NodeJS.ErrnoException
    t.is(error.code, 'EISDIR')
    t.true(fs.statSync(target).isDirectory())
  })

  test(`${copier.name} with a read-only destination fd or a write-only source fd fails with EBADF and writes nothing`, async (t) => {
    const dir = tempDir(t)
    const contents = pattern(1000, 34)
    const source = writeFixture(dir, 'source', contents)
    const old = pattern(1000, 35)
    const target = writeFixture(dir, 'target', old)
    const readOnly = openForTest(t, target, 'r')
    const writeOnlySource = openForTest(t, source, 'a')
    const intoReadOnly = (await t.throwsAsync(copier.copy(source, readOnly))) as NodeJS.ErrnoException
    t.is(intoReadOnly.code, 'EBADF')
    const fromWriteOnly = (await t.throwsAsync(copier.copy(writeOnlySource, target))) as NodeJS.ErrnoException
    t.is(fromWriteOnly.code, 'EBADF')
    t.is(sha256(fs.readFileSync(source)), sha256(contents))
  })

  test(`${copier.name} with a source or destination fd that is not open fails with EBADF`, async (t) => {
    const dir = tempDir(t)
    const sourceFd = openForTest(t, writeFixture(dir, 'source', pattern(100)))
    // Far above any fd limit, so never open: a just-closed number could be reused by concurrent work.
    const notOpen = 2 ** 30
    const destination = path.join(dir, 'copy')
    t.like(await t.throwsAsync(copier.copy(notOpen, destination)), { code: 'EBADF', errno: errno('EBADF') })
    t.false(fs.existsSync(destination))
    t.like(await t.throwsAsync(copier.copy(sourceFd, notOpen)), { code: 'EBADF', errno: errno('EBADF') })
  })
}

test('copyFile with a closed FileHandle fails with EBADF', async (t) => {
  const dir = tempDir(t)
  const source = writeFixture(dir, 'source', pattern(100))
  const handle = await fs.promises.open(source, 'r')
  await handle.close()
  const error = (await t.throwsAsync(copyFile(handle, path.join(dir, 'copy')))) as NodeJS.ErrnoException
  t.is(error.code, 'EBADF')
  const destinationHandle = await fs.promises.open(path.join(dir, 'out'), 'w')
  await destinationHandle.close()
  t.is(((await t.throwsAsync(copyFile(source, destinationHandle))) as NodeJS.ErrnoException).code, 'EBADF')
})

const typeErrorArgs: Array<[string, unknown[]]> = [
  ['source {}', [{}, 'dest']],
  ['source null', [null, 'dest']],
  ['source undefined', [undefined, 'dest']],
  ['source true', [true, 'dest']],
  ['source Buffer', [Buffer.from('x'), 'dest']],
  ['destination {}', ['src', {}]],
  ['destination null', ['src', null]],
  ['an http: URL source', [new URL('http://example.com/file'), 'dest']],
  ['an http: URL destination', ['src', new URL('http://example.com/file')]],
  ['options a string', ['src', 'dest', 'x']],
  ['options null', ['src', 'dest', null]],
  ['options.offset a string', ['src', 'dest', { offset: '1' }]],
  ['options.offset null', ['src', 'dest', { offset: null }]],
  ['options.offset a bigint', ['src', 'dest', { offset: 1n }]],
  ['options.length a string', ['src', 'dest', { length: '10' }]],
  ['options.destinationOffset a string', ['src', 'dest', { destinationOffset: '0' }]],
  ['options.mode a string', ['src', 'dest', { mode: '1' }]],
]

const rangeErrorArgs: Array<[string, unknown[]]> = [
  // Not integers: RangeError, as Node's own validateInteger answers.
  ['source 1.5', [1.5, 'dest']],
  ['source NaN', [NaN, 'dest']],
  ['destination 2.5', ['src', 2.5]],
  ['options.offset 1.5', ['src', 'dest', { offset: 1.5 }]],
  ['options.offset NaN', ['src', 'dest', { offset: NaN }]],
  ['options.length 0.5', ['src', 'dest', { length: 0.5 }]],
  ['options.destinationOffset 1.5', ['src', 'dest', { destinationOffset: 1.5 }]],
  ['options.mode 1.5', ['src', 'dest', { mode: 1.5 }]],
  ['source fd -1', [-1, 'dest']],
  ['source fd 2^31', [2 ** 31, 'dest']],
  ['destination fd -1', ['src', -1]],
  ['options.offset -1', ['src', 'dest', { offset: -1 }]],
  ['options.offset 2^53', ['src', 'dest', { offset: 2 ** 53 }]],
  ['options.offset Infinity', ['src', 'dest', { offset: Infinity }]],
  ['options.length -1', ['src', 'dest', { length: -1 }]],
  ['options.length MAX_SAFE_INTEGER + 1', ['src', 'dest', { length: Number.MAX_SAFE_INTEGER + 1 }]],
  ['options.destinationOffset -1', ['src', 'dest', { destinationOffset: -1 }]],
  ['options.destinationOffset 2^53', ['src', 'dest', { destinationOffset: 2 ** 53 }]],
  ['options.mode -1', ['src', 'dest', { mode: -1 }]],
  ['options.mode 8', ['src', 'dest', { mode: 8 }]],
  ['options.mode 2^31', ['src', 'dest', { mode: 2 ** 31 }]],
]

test('copyFileSync throws TypeError ERR_INVALID_ARG_TYPE and RangeError ERR_OUT_OF_RANGE for bad arguments, before touching any file', (t) => {
  const call = copyFileSync as (...args: unknown[]) => number
  for (const [why, args] of typeErrorArgs) t.throws(() => call(...args), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, why)
  for (const [why, args] of rangeErrorArgs) t.throws(() => call(...args), { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, why)
  t.false(fs.existsSync('dest'), 'nothing created in the working directory')
})

test('copyFile never throws synchronously: bad arguments reject with ERR_INVALID_ARG_TYPE or ERR_OUT_OF_RANGE', async (t) => {
  const call = copyFile as (...args: unknown[]) => Promise<number>
  const extraTypeErrors: Array<[string, unknown[]]> = [
    ['options.signal {}', ['src', 'dest', { signal: {} }]],
    ['options.signal an AbortController', ['src', 'dest', { signal: new AbortController() }]],
    ['options.onProgress a string', ['src', 'dest', { onProgress: 'x' }]],
  ]
  for (const [why, args] of [...typeErrorArgs, ...extraTypeErrors]) {
    let promise: Promise<number> | undefined
    t.notThrows(() => {
      promise = call(...args)
    }, why)
    await t.throwsAsync(promise!, { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, why)
  }
  for (const [why, args] of rangeErrorArgs) {
    let promise: Promise<number> | undefined
    t.notThrows(() => {
      promise = call(...args)
    }, why)
    await t.throwsAsync(promise!, { instanceOf: RangeError, code: 'ERR_OUT_OF_RANGE' }, why)
  }
  for (const [why, args] of [
    ['a missing source', ['/nonexistent/sendfile-test/source', path.join(os.tmpdir(), 'never')]],
    ['a directory source', [os.tmpdir(), path.join(os.tmpdir(), 'never')]],
  ] as Array<[string, unknown[]]>) {
    let promise: Promise<number> | undefined
    t.notThrows(() => {
      promise = call(...args)
    }, why)
    await t.throwsAsync(promise!, undefined, why)
  }
  t.false(fs.existsSync(path.join(os.tmpdir(), 'never')))
})

for (const copier of copiers) {
  test(`${copier.name} refuses paths with null bytes and COPYFILE_FICLONE_FORCE with ERR_INVALID_ARG_VALUE`, async (t) => {
    const dir = tempDir(t)
    const source = writeFixture(dir, 'source', pattern(10))
    const expected = { instanceOf: TypeError, code: 'ERR_INVALID_ARG_VALUE' }
    await t.throwsAsync(copier.copy('bad\u0000name', path.join(dir, 'a')), expected)
    await t.throwsAsync(copier.copy(source, path.join(dir, 'b\u0000c')), expected)
    await t.throwsAsync(copier.copy(source, path.join(dir, 'd'), { mode: fs.constants.COPYFILE_FICLONE_FORCE }), expected)
    t.deepEqual(fs.readdirSync(dir), ['source'], 'nothing created')
  })
}

// ---------------------------------------------------------------------------------------------
// transferChannel.

test('each copyFile and copyFileSync publishes one report naming the destination it was given', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(12_345, 36)
  const source = writeFixture(dir, 'source', contents)
  const url = pathToFileURL(path.join(dir, 'via-url'))
  const handle = await openHandle(t, path.join(dir, 'via-handle'), 'w+')
  const fd = openForTest(t, path.join(dir, 'via-fd'), 'w+')
  // Subscribed once the fd is open: fd numbers are reused, and concurrent tests publish too.
  const reportsFor = captureReports(t)

  await copyFile(source, url, { length: 100 })
  await copyFile(source, handle, { length: 200 })
  copyFileSync(source, fd, { length: 300 })
  for (const [target, operation, bytes] of [
    [url, 'copyFile', 100],
    [handle, 'copyFile', 200],
    [fd, 'copyFileSync', 300],
  ] as Array<[TransferReport['target'], string, number]>) {
    const reports = reportsFor(target)
    t.is(reports.length, 1)
    t.like(reports[0], { operation, bytes, method: 'copy_file_range', zeroCopy: true })
    t.is(reports[0].target, target, 'the very object passed as destination')
    t.is(reports[0].error, undefined)
  }

  const failing = path.join(dir, 'failing')
  t.throws(() => copyFileSync(source, source, { offset: 0, length: 10, destinationOffset: 5 }))
  await t.throwsAsync(copyFile(path.join(dir, 'missing'), failing))
  t.truthy(reportsFor(failing)[0]?.error, 'a failed copy reports its error')
  t.truthy(reportsFor(source).find((report) => report.operation === 'copyFileSync')?.error)
})

// ---------------------------------------------------------------------------------------------
// socketFd.

test('socketFd of a connected TCP socket is a stable non-negative fd, distinct per socket, and -1 once destroyed', async (t) => {
  const { sender, receiver } = await tcpPair(t)
  const fd = socketFd(sender)
  t.true(Number.isInteger(fd) && fd >= 0, `${fd}`)
  t.is(socketFd(sender), fd, 'the same across calls')
  const other = socketFd(receiver)
  t.true(Number.isInteger(other) && other >= 0)
  t.not(other, fd, 'two sockets have two fds')
  t.true(fs.fstatSync(fd).isSocket(), 'the fd is a socket')

  const closed = new Promise<void>((resolve) => sender.once('close', () => resolve()))
  sender.destroy()
  await Promise.race([closed, tick(5000)])
  t.is(socketFd(sender), -1, 'destroyed')
  t.is(socketFd(receiver), other, 'the other socket keeps its fd')
})

test('socketFd is -1 for a socket that is not connected and for a TLS socket', (t) => {
  const unconnected = new net.Socket()
  t.teardown(() => unconnected.destroy())
  t.is(socketFd(unconnected), -1)
  const secure = new tls.TLSSocket(new net.Socket())
  t.teardown(() => secure.destroy())
  t.is(socketFd(secure), -1)
})

test('socketFd rejects non-sockets with ERR_INVALID_ARG_TYPE', (t) => {
  const call = socketFd as (value: unknown) => number
  for (const value of [{}, null, undefined, 3, { _handle: { fd: 3 } }, new net.Server()]) {
    t.throws(() => call(value), { instanceOf: TypeError, code: 'ERR_INVALID_ARG_TYPE' }, String(value))
  }
})

test.serial('a destination swapped for a link to the source during the copy never truncates the source', async (t) => {
  const dir = tempDir(t)
  const contents = pattern(64 * 1024, 79)
  const source = writeFixture(dir, 'source', contents)
  const destination = path.join(dir, 'destination')
  // Another process flips `destination` between a regular file and a link to the source, as
  // fast as it can, for as long as the copies run (bounded: it exits by itself after 60 s).
  const swapper = spawn(
    process.execPath,
    [
      '-e',
      `const fs = require('fs'); const [source, destination] = process.argv.slice(1); const until = Date.now() + 60_000;
       while (Date.now() < until) {
         try { fs.symlinkSync(source, destination + '.link'); fs.renameSync(destination + '.link', destination) } catch {}
         try { fs.writeFileSync(destination + '.file', 'x'); fs.renameSync(destination + '.file', destination) } catch {}
       }`,
      source,
      destination,
    ],
    { stdio: 'ignore' },
  )
  const exited = new Promise((resolve) => swapper.once('exit', resolve))
  t.teardown(() => swapper.kill())
  t.true(await eventually(() => fs.existsSync(destination)), 'the swapper runs')
  let intact = 0
  for (let round = 0; round < 300; round++) {
    for (const copier of copiers) {
      await copier.copy(source, destination).catch(() => {})
      if (fs.statSync(source).size === contents.length) intact++
    }
  }
  swapper.kill()
  await exited
  t.is(intact, 600, 'the source kept its size after every copy')
  t.is(sha256(fs.readFileSync(source)), sha256(contents))
})

linuxTest('copying from a FIFO path fails at once instead of waiting for a writer, with either form', async (t) => {
  const dir = tempDir(t)
  const fifo = path.join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  for (const copier of copiers) {
    const error = (await within(
      copier.copy(fifo, path.join(dir, `from-fifo-${copier.name}`)).then(
        () => undefined,
        (error: unknown) => error,
      ),
      10_000,
      copier.name,
    )) as NodeJS.ErrnoException | undefined
    t.like(error, { code: 'ESPIPE', syscall: 'copyfile', path: fifo }, copier.name)
  }
})
