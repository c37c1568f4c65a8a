/** `zerocopy copy <src> <dst>`: copyFile, file to file inside the kernel. */
import * as fs from 'node:fs'

import { copyFile } from '../../index.js'
import { type CommandSpec, type ParsedCommand, flag } from './args.js'
import { EXIT_OK } from './errors.js'
import { printSummary, progressBar, watchTransfer } from './progress.js'
import { interruptSignal } from './signals.js'

export const copySpec: CommandSpec = {
  name: 'copy',
  synopsis: '<src> <dst> [--exclusive] [--json]',
  summary: 'copy a file inside the kernel',
  description: 'Copy a file inside the kernel: copy_file_range (a reflink on btrfs/XFS), then sendfile, then read/write.',
  operands: ['<src>', '<dst>'],
  required: 2,
  options: {
    exclusive: { type: 'boolean', short: 'x', description: 'fail (EEXIST) if <dst> exists' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
  },
}

export async function copyCommand({ values, operands: [source, destination] }: ParsedCommand): Promise<number> {
  const bar = progressBar(process.stderr, 'copied')
  const interrupt = interruptSignal()
  const transfer = watchTransfer('copyFile', () => destination)
  const started = performance.now()
  try {
    const bytes = await copyFile(source, destination, {
      mode: flag(values, 'exclusive') ? fs.constants.COPYFILE_EXCL : 0,
      signal: interrupt.signal,
      onProgress: (copied, total) => bar.update(copied, total),
    })
    const seconds = (performance.now() - started) / 1000
    bar.stop()
    printSummary(process.stdout, transfer.summary('copy', bytes, seconds), flag(values, 'json'))
    return EXIT_OK
  } finally {
    bar.stop()
    transfer.stop()
    interrupt.dispose()
  }
}
