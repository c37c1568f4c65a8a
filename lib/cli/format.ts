/** Sizes, rates and durations for people: sizes in binary units (a file's size), rates in decimal ones (a link's speed). */

const BINARY_UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']
const DECIMAL_RATES = ['B/s', 'kB/s', 'MB/s', 'GB/s', 'TB/s']

/** `13 B`, `64.0 MiB`, `1.0 GiB`. */
export function formatBytes(bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < BINARY_UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${BINARY_UNITS[unit]}`
}

/** `850 MB/s`, `2.5 GB/s`; `-` when no time has passed to divide by. */
export function formatRate(bytesPerSecond: number): string {
  if (!Number.isFinite(bytesPerSecond)) return '-'
  let value = bytesPerSecond
  let unit = 0
  while (value >= 1000 && unit < DECIMAL_RATES.length - 1) {
    value /= 1000
    unit++
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${DECIMAL_RATES[unit]}`
}

/** `0.42 s`, `12.3 s`, `95 s`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 10) return `${seconds.toFixed(2)} s`
  if (seconds < 100) return `${seconds.toFixed(1)} s`
  return `${Math.round(seconds)} s`
}

/** Bytes per second over `seconds`; Infinity for an instant (formatted as `-`). */
export function rateOf(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / seconds : Number.POSITIVE_INFINITY
}
