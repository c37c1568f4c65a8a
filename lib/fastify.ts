/**
 * `@zerocopy/sendfile/fastify`: a Fastify 5 plugin that serves a directory under a prefix with
 * createStaticHandler and decorates `reply.sendFile`, the bodies going zero-copy through the raw
 * response. Only types come from `fastify` (an optional peer dependency): nothing here loads it.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type * as http from 'node:http'
import * as path from 'node:path'

import { invalidArgType, invalidArgValue } from './errors.js'
import type { ServeFileOptions, SetHeaders, StaticOptions } from './http/options.js'
import { serveFile } from './http/serve-file.js'
import { createStaticHandler } from './http/static.js'
import { validateOptionsObject } from './validate.js'

/** Options of the Fastify plugin: where the files are, where they are served, and createStaticHandler's options. */
export interface FastifySendfileOptions extends StaticOptions {
  /** The directory served, and the one `reply.sendFile` paths are relative to. */
  root: string
  /** The URL prefix the files are served under: `/assets` serves `root/app.js` at `/assets/app.js`. Default `/`. */
  prefix?: string
  /** Adds `reply.sendFile`; false when another plugin (such as `@fastify/static`) has it. Default true. */
  decorateReply?: boolean
}

declare module 'fastify' {
  interface FastifyReply {
    /**
     * Answers with the file at `file`, relative to the plugin's `root` (a path that leads out of
     * it goes to the not-found handler), with serveFile's headers, ranges and preconditions and
     * the plugin's options, overridden by `options`. A file that does not exist is a 404 from
     * serveFile. Returns the reply, which settles when the response is complete.
     */
    sendFile(file: string, options?: ServeFileOptions): FastifyReply
  }
}

/** The options that concern a whole directory only: the rest apply to `reply.sendFile` too. */
const STATIC_ONLY = ['index', 'extensions', 'symlinks', 'openFileCache', 'dotfiles', 'fallthrough'] as const

/**
 * The Fastify plugin: `GET` and `HEAD` under `prefix` are served from `root` by
 * {@link createStaticHandler} (a miss goes to Fastify's not-found handler, an error to its error
 * handler), and `reply.sendFile(file, options)` answers with a file under `root`. The reply is
 * hijacked just before a file's headers, so the body goes from the file to the socket with
 * sendfile and Fastify sends nothing more; its `onRequest`, `preHandler` and `onResponse` hooks
 * still run. Registered without encapsulation (as `fastify-plugin` would), so `reply.sendFile`
 * is available to the routes of the registering context.
 *
 * @example
 * ```ts
 * import Fastify from 'fastify'
 * import sendfile from '@zerocopy/sendfile/fastify'
 *
 * const app = Fastify()
 * app.register(sendfile, { root: './public', prefix: '/assets', maxAge: 3600 })
 * app.get('/', (request, reply) => reply.sendFile('index.html'))
 * ```
 */
function fastifySendfile(instance: FastifyInstance, options: FastifySendfileOptions, done: (error?: Error) => void): void {
  try {
    register(instance, options)
  } catch (error) {
    // Bad options fail `register` (and `ready`/`listen`) rather than the process.
    done(error as Error)
    return
  }
  done()
}

function register(instance: FastifyInstance, options: FastifySendfileOptions): void {
  const settings = validateOptionsObject(options)
  const { root, prefix = '/', decorateReply = true, ...staticOptions } = settings as unknown as FastifySendfileOptions
  if (typeof root !== 'string') throw invalidArgType('options.root', 'of type string', root)
  if (typeof prefix !== 'string') throw invalidArgType('options.prefix', 'of type string', prefix)
  if (!prefix.startsWith('/')) throw invalidArgValue('options.prefix', prefix, "must start with '/'")
  if (typeof decorateReply !== 'boolean') throw invalidArgType('options.decorateReply', 'of type boolean', decorateReply)

  /** The reply of each raw response whose file this plugin is answering, to hijack it. */
  const replies = new WeakMap<http.ServerResponse, FastifyReply>()
  const hijacking = (setHeaders: SetHeaders | undefined): SetHeaders => {
    return (res, file, stats) => {
      // A hook that throws leaves the reply to Fastify's error handler.
      setHeaders?.(res, file, stats)
      // Just before the file's headers: from here on Fastify must not answer.
      replies.get(res as http.ServerResponse)?.hijack()
    }
  }
  const statics = createStaticHandler(root, { ...staticOptions, setHeaders: hijacking(staticOptions.setHeaders) })
  instance.addHook('onClose', (_instance, closed) => {
    statics.close()
    closed()
  })

  const routePrefix = prefix.endsWith('/') ? prefix : `${prefix}/`
  instance.route({
    method: ['GET', 'HEAD'],
    url: `${routePrefix}*`,
    handler(request: FastifyRequest, reply: FastifyReply) {
      const url = request.raw.url ?? '/'
      if (!url.startsWith(routePrefix)) return void reply.callNotFound()
      // The static handler reads the path below the prefix from `url`, as under an Express mount
      // point, and redirects with `originalUrl`; the request itself is left as Fastify has it.
      const below = Object.create(request.raw, { url: { value: url.slice(routePrefix.length - 1) }, originalUrl: { value: url } }) as http.IncomingMessage
      replies.set(reply.raw, reply)
      statics(below, reply.raw, (error?: unknown) => {
        replies.delete(reply.raw)
        if (error === undefined) reply.callNotFound()
        else fail(reply, error)
      })
    },
  })

  if (decorateReply) {
    const rootPath = path.resolve(root)
    const fileOptions: Record<string, unknown> = { ...staticOptions }
    for (const name of STATIC_ONLY) delete fileOptions[name]
    instance.decorateReply('sendFile', function sendFile(this: FastifyReply, file: string, options?: ServeFileOptions): FastifyReply {
      if (typeof file !== 'string') throw invalidArgType('file', 'of type string', file)
      const target = path.resolve(rootPath, file)
      if (target !== rootPath && !target.startsWith(rootPath + path.sep)) {
        this.callNotFound()
        return this
      }
      const merged: ServeFileOptions = { ...fileOptions, ...options }
      replies.set(this.raw, this)
      serveFile(this.request.raw, this.raw, target, { ...merged, setHeaders: hijacking(merged.setHeaders) }).then(
        () => replies.delete(this.raw),
        (error: unknown) => {
          replies.delete(this.raw)
          fail(this, error)
        },
      )
      return this
    })
  }
}

/** An error before the headers goes to Fastify's error handler; after them, only closing the connection can tell. */
function fail(reply: FastifyReply, error: unknown): void {
  if (reply.raw.headersSent) reply.raw.destroy()
  else if (!reply.sent) reply.send(error)
  else reply.raw.writeHead(500).end()
}

// Fastify's plugin metadata, as fastify-plugin sets it: no encapsulation (the decorator and the
// routes belong to the registering context), a name for errors, and the Fastify versions served.
Object.assign(fastifySendfile, {
  [Symbol.for('skip-override')]: true,
  [Symbol.for('fastify.display-name')]: '@zerocopy/sendfile/fastify',
  [Symbol.for('plugin-meta')]: { name: '@zerocopy/sendfile/fastify', fastify: '5.x' },
})

export default fastifySendfile
export { fastifySendfile }
