// Types of the ESM entry (fastify.mjs): the plugin as the default export, its options, and the
// `reply.sendFile` declaration, which lib/fastify.d.ts adds to Fastify's types.
import type { FastifyInstance } from 'fastify'
import type { FastifySendfileOptions } from './lib/fastify.js'

export type { FastifySendfileOptions }
export declare function fastifySendfile(instance: FastifyInstance, options: FastifySendfileOptions, done: (error?: Error) => void): void
export default fastifySendfile
