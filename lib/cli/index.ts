/**
 * The `zerocopy` command line: `serve`, `send`, `receive` and `copy` over the package's public
 * API, one module per command. `bin/zerocopy.js` calls {@link main}.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import { type CommandSpec, type ParsedCommand, helpText, parseCommand, usageLine } from './args.js'
import { copyCommand, copySpec } from './copy.js'
import { EXIT_FAILURE, EXIT_OK, EXIT_USAGE, UsageError, describeError, exitForSignal } from './errors.js'
import { receiveCommand, receiveSpec } from './receive.js'
import { sendCommand, sendSpec } from './send.js'
import { serveCommand, serveSpec } from './serve.js'
import { interruptionOf } from './signals.js'

interface Command {
  spec: CommandSpec
  run(parsed: ParsedCommand): Promise<number>
}

const COMMANDS: Record<string, Command> = {
  serve: { spec: serveSpec, run: serveCommand },
  send: { spec: sendSpec, run: sendCommand },
  receive: { spec: receiveSpec, run: receiveCommand },
  copy: { spec: copySpec, run: copyCommand },
}

const USAGE = 'usage: zerocopy <serve|send|receive|copy> [options]   (zerocopy --help, zerocopy <command> --help)'

const HELP = `zerocopy: serve, send, receive and copy files with zero-copy sendfile(2)

${USAGE}

commands:
${Object.values(COMMANDS)
  .map(({ spec }) => `  ${`${spec.name} ${spec.operands.join(' ')}`.padEnd(25)}${spec.summary}`)
  .join('\n')}

options:
  -h, --help     show this help, or a command's with zerocopy <command> --help
  -v, --version  print the version

examples:
  zerocopy serve ./public --port 8080
  zerocopy receive 9000 --out song.mp3      # on one machine
  zerocopy send song.mp3 otherhost:9000     # on the other
  zerocopy copy video.mp4 backup.mp4 --exclusive
`

function version(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version: string }
  return manifest.version
}

/**
 * Runs the command line `argv` (without `node` and the script) and resolves with the exit code:
 * 0 done, 1 a failed transfer or server, 2 a usage error, 128 + n for signal n. Never rejects,
 * and prints failures as one line on stderr, never a stack trace.
 *
 * @example
 * ```ts
 * main(process.argv.slice(2)).then((code) => { process.exitCode = code })
 * ```
 */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (name === '-h' || name === '--help') return print(process.stdout, HELP, EXIT_OK)
  if (name === '-v' || name === '--version') return print(process.stdout, `${version()}\n`, EXIT_OK)
  if (name === undefined) return print(process.stderr, `zerocopy: missing command\n${USAGE}\n`, EXIT_USAGE)
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined
  if (command === undefined) {
    const what = name.startsWith('-') ? 'option' : 'command'
    return print(process.stderr, `zerocopy: unknown ${what} '${name}'\n${USAGE}\n`, EXIT_USAGE)
  }
  try {
    const parsed = parseCommand(command.spec, rest)
    if (parsed === 'help') return print(process.stdout, helpText(command.spec), EXIT_OK)
    return await command.run(parsed)
  } catch (error) {
    return failed(command.spec, error)
  }
}

function failed(spec: CommandSpec, error: unknown): number {
  const prefix = `zerocopy ${spec.name}:`
  if (error instanceof UsageError) return print(process.stderr, `${prefix} ${error.message}\n${usageLine(spec)}\n`, EXIT_USAGE)
  const interruption = interruptionOf(error)
  if (interruption !== undefined) return print(process.stderr, `${prefix} ${interruption.message}\n`, exitForSignal(interruption.signal))
  return print(process.stderr, `${prefix} ${describeError(error)}\n`, EXIT_FAILURE)
}

function print(stream: NodeJS.WritableStream, text: string, code: number): number {
  stream.write(text)
  return code
}
