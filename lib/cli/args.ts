/**
 * Command specs and their parsing with `node:util` `parseArgs`. Its tokens are checked here,
 * not by its strict mode, so every mistake gets one short message of the same shape (strict
 * mode's messages run to several sentences of advice about `--`).
 */
import { parseArgs } from 'node:util'

import { UsageError } from './errors.js'

export interface OptionSpec {
  type: 'string' | 'boolean'
  short?: string
  /** The value's placeholder in help (`N`, `DIR`). */
  placeholder?: string
  description: string
}

export interface CommandSpec {
  name: string
  /** Operands and options after `zerocopy <name>`, for the usage line. */
  synopsis: string
  /** A few words for `zerocopy --help`'s list of commands. */
  summary: string
  description: string
  /** Operand names, in order; those after `required` are optional. */
  operands: string[]
  required: number
  options: Record<string, OptionSpec>
  /** Lines after the options in `--help`. */
  notes?: string[]
}

export type OptionValues = Record<string, string | boolean | undefined>

export interface ParsedCommand {
  values: OptionValues
  operands: string[]
}

const HELP: OptionSpec = { type: 'boolean', short: 'h', description: 'show this help' }

export function usageLine(spec: CommandSpec): string {
  return `usage: zerocopy ${spec.name} ${spec.synopsis}`
}

export function helpText(spec: CommandSpec): string {
  const options: Record<string, OptionSpec> = { ...spec.options, help: HELP }
  const rows = Object.entries(options).map(([name, option]) => {
    const flag = `${option.short ? `-${option.short}, ` : '    '}--${name}${option.placeholder ? ` ${option.placeholder}` : ''}`
    return [flag, option.description] as const
  })
  const width = Math.max(...rows.map(([flag]) => flag.length))
  return [
    usageLine(spec),
    '',
    spec.description,
    '',
    'options:',
    ...rows.map(([flag, description]) => `  ${flag.padEnd(width)}  ${description}`),
    ...(spec.notes ? ['', ...spec.notes] : []),
    '',
  ].join('\n')
}

/** `argv` (after the command name) parsed against `spec`; 'help' when `-h`/`--help` is among the options. */
export function parseCommand(spec: CommandSpec, argv: string[]): ParsedCommand | 'help' {
  const options: Record<string, OptionSpec> = { ...spec.options, help: HELP }
  const { tokens } = parseArgs({
    args: argv,
    options: Object.fromEntries(Object.entries(options).map(([name, { type, short }]) => [name, short ? { type, short } : { type }])),
    allowPositionals: true,
    strict: false,
    tokens: true,
  })
  // Help wins over every other mistake on the line: `zerocopy send --bogus --help` shows help.
  if (tokens.some((token) => token.kind === 'option' && token.name === 'help')) return 'help'
  const values: OptionValues = {}
  const operands: string[] = []
  for (const token of tokens) {
    if (token.kind === 'positional') operands.push(token.value)
    if (token.kind !== 'option') continue
    const option = Object.hasOwn(options, token.name) ? options[token.name] : undefined
    if (option === undefined) throw new UsageError(`unknown option '${token.rawName}'`)
    if (option.type === 'boolean' && token.value !== undefined) throw new UsageError(`option '--${token.name}' takes no value`)
    if (option.type === 'string' && token.value === undefined) throw new UsageError(`option '--${token.name}' needs a value`)
    values[token.name] = option.type === 'boolean' ? true : token.value
  }
  if (operands.length < spec.required) throw new UsageError(`missing ${spec.operands[operands.length]}`)
  if (operands.length > spec.operands.length) throw new UsageError(`unexpected argument '${operands[spec.operands.length]}'`)
  return { values, operands }
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name]
  return typeof value === 'string' ? value : undefined
}

export function flag(values: OptionValues, name: string): boolean {
  return values[name] === true
}

/** A decimal integer in [min, max]: `--port 8080`, `--offset 4096`. No signs, exponents or fractions. */
export function integerOption(values: OptionValues, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
  const text = stringOption(values, name)
  if (text === undefined) return undefined
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!(value >= min && value <= max)) throw new UsageError(`option '--${name}' must be an integer from ${min} to ${max}, not '${text}'`)
  return value
}

/** One of `choices`: `--dotfiles deny`. */
export function choiceOption<T extends string>(values: OptionValues, name: string, choices: readonly T[]): T | undefined {
  const text = stringOption(values, name)
  if (text === undefined) return undefined
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`option '--${name}' must be one of ${choices.join(', ')}, not '${text}'`)
  return text as T
}

/** A TCP port operand or option value: 0 asks the kernel for a free one. */
export function parsePort(text: string, what: string): number {
  const port = /^\d+$/.test(text) ? Number(text) : Number.NaN
  if (!(port >= 0 && port <= 65535)) throw new UsageError(`${what} must be a number from 0 to 65535, not '${text}'`)
  return port
}

export interface HostPort {
  host: string
  port: number
}

/** `host:port`, `[::1]:port`: where `send` connects. */
export function parseHostPort(text: string): HostPort {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(text)
  if (match === null) throw new UsageError(`'${text}' is not host:port (for example 127.0.0.1:9000 or [::1]:9000)`)
  const port = parsePort(match[3], 'the port')
  if (port === 0) throw new UsageError(`cannot connect to port 0 in '${text}'`)
  return { host: match[1] ?? match[2], port }
}
