/**
 * The live event stream (`/sse`). The browser's EventSource resumes by itself with `Last-Event-ID` while the
 * same EventSource reconnects; when we must open a new one (the server closed it for good, e.g. on an expired
 * token, or the network came back), we pass `last_event_id` of the last event seen so nothing is lost.
 */

export const EVENT_TYPES = [
  'new_message',
  'message_updated',
  'message_deleted',
  'message_read',
  'reaction_added',
  'reaction_removed',
  'message_pinned',
  'message_unpinned',
  'chat_created',
  'chat_updated',
  'chat_member_added',
  'chat_member_removed',
  'chat_member_updated',
  'workspace_member_removed',
  'typing_started',
  'typing_stopped',
  'user_presence',
  'resync_required',
] as const

export type EventType = (typeof EVENT_TYPES)[number]

/**
 * Events about what is true now (typing, presence): sent live without an `id:` and never replayed. The
 * browser still gives them the id of the last event that had one, so they must not be taken for a replay of
 * it, nor move the resume point.
 */
const LIVE_ONLY: ReadonlySet<EventType> = new Set<EventType>(['typing_started', 'typing_stopped', 'user_presence'])

export interface EventSourceLike {
  readonly readyState: number
  addEventListener(type: string, listener: (event: MessageEvent) => void): void
  close(): void
  onopen: ((event: Event) => void) | null
  onerror: ((event: Event) => void) | null
}

export type EventSourceFactory = (url: string) => EventSourceLike

export interface SseOptions {
  path?: string
  token: () => string | null
  onEvent: (type: EventType, data: unknown, id: string | null) => void
  onStatus?: (status: 'connecting' | 'open' | 'closed') => void
  create?: EventSourceFactory
  /** Milliseconds before opening a new EventSource after the old one closed for good. */
  backoff?: (attempt: number) => number
  schedule?: (fn: () => void, ms: number) => unknown
  cancel?: (handle: unknown) => void
}

const CLOSED = 2

export class SseClient {
  lastEventId: string | null = null
  private source: EventSourceLike | null = null
  private attempts = 0
  private timer: unknown = null
  private stopped = true
  private readonly opts: Required<Omit<SseOptions, 'onStatus'>> & Pick<SseOptions, 'onStatus'>

  constructor(opts: SseOptions) {
    this.opts = {
      path: '/sse',
      create: (url) => new EventSource(url) as unknown as EventSourceLike,
      backoff: (n) => Math.min(10_000, 500 * 2 ** n),
      schedule: (fn, ms) => setTimeout(fn, ms),
      cancel: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      ...(Object.fromEntries(Object.entries(opts).filter(([, v]) => v !== undefined)) as SseOptions),
    }
  }

  url(): string {
    const params = new URLSearchParams()
    const token = this.opts.token()
    if (token) params.set('access_token', token)
    if (this.lastEventId) params.set('last_event_id', this.lastEventId)
    return `${this.opts.path}?${params.toString()}`
  }

  start(): void {
    this.stopped = false
    this.open()
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== null) this.opts.cancel(this.timer)
    this.timer = null
    this.source?.close()
    this.source = null
    this.opts.onStatus?.('closed')
  }

  /**
   * The device went offline: close the stream rather than trust a connection that may hang half-open without
   * error; `reconnect()` resumes after the last event seen.
   */
  suspend(): void {
    if (this.timer !== null) this.opts.cancel(this.timer)
    this.timer = null
    this.source?.close()
    this.source = null
    this.opts.onStatus?.('closed')
  }

  /** Open a fresh EventSource now (e.g. the network came back), resuming after the last event seen. */
  reconnect(): void {
    if (this.stopped) return
    this.open()
  }

  get connected(): boolean {
    return this.source !== null && this.source.readyState === 1
  }

  private open(): void {
    if (this.timer !== null) this.opts.cancel(this.timer)
    this.timer = null
    this.source?.close()
    this.opts.onStatus?.('connecting')
    const source = this.opts.create(this.url())
    this.source = source
    source.onopen = () => {
      if (this.source !== source) return
      this.attempts = 0
      this.opts.onStatus?.('open')
    }
    source.onerror = () => {
      if (this.source !== source) return
      if (source.readyState === CLOSED) {
        // The browser gave up (an HTTP error such as 401): open a new one ourselves, with a fresh token.
        this.opts.onStatus?.('closed')
        const wait = this.opts.backoff(this.attempts++)
        this.timer = this.opts.schedule(() => {
          this.timer = null
          if (!this.stopped) this.open()
        }, wait)
      } else {
        this.opts.onStatus?.('connecting')
      }
    }
    for (const type of EVENT_TYPES) {
      source.addEventListener(type, (event: MessageEvent) => {
        if (this.source !== source) return
        this.handle(type, event)
      })
    }
  }

  private handle(type: EventType, event: MessageEvent): void {
    const id = LIVE_ONLY.has(type) ? null : event.lastEventId || null
    if (id !== null && this.lastEventId !== null && isNumeric(id) && isNumeric(this.lastEventId)) {
      // Ids increase; one we have already seen is a replay overlap.
      if (BigInt(id) <= BigInt(this.lastEventId)) return
    }
    if (id !== null) this.lastEventId = id
    let data: unknown = null
    try {
      data = event.data ? JSON.parse(event.data as string) : null
    } catch {
      return
    }
    this.opts.onEvent(type, data, id)
  }
}

function isNumeric(s: string): boolean {
  return /^\d+$/.test(s)
}
