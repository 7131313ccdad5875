/**
 * Stand-ins for what lies outside the client: the HTTP API (a tiny in-memory server behind `fetch`) and the
 * browser's EventSource.
 */
import type { Message } from '../src/api/types'

export type Handler = (req: { method: string; url: URL; body: unknown; headers: Record<string, string> }) => Response | Promise<Response>

export function json(data: unknown, status = 200, meta?: Record<string, unknown>): Response {
  const body = status < 400 ? { success: true, data, ...(meta ? { meta } : {}) } : { success: false, error: data }
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })
}

export interface Call {
  method: string
  path: string
  query: Record<string, string>
  body: unknown
  auth: string | undefined
}

export function installFetch(handler: Handler): Call[] {
  const calls: Call[] = []
  globalThis.fetch = (async (input: RequestInfo | URL, init?: RequestInit) => {
    const url = new URL(String(input), 'http://localhost')
    const method = init?.method ?? 'GET'
    const headers = (init?.headers ?? {}) as Record<string, string>
    const body = init?.body ? JSON.parse(String(init.body)) : undefined
    calls.push({ method, path: url.pathname, query: Object.fromEntries(url.searchParams), body, auth: headers.Authorization })
    return handler({ method, url, body, headers })
  }) as typeof fetch
  return calls
}

let nextId = 1000

export function message(chatId: number, seq: number, fields: Partial<Message> = {}): Message {
  return {
    id: nextId++,
    chat_id: chatId,
    seq,
    sender_id: 2,
    content: `message ${seq}`,
    files: [],
    reply_to: null,
    idempotency_key: null,
    created_at: new Date(Date.UTC(2026, 0, 1, 12, 0, seq)).toISOString(),
    edited_at: null,
    deleted: false,
    ...fields,
  }
}

/** A chat's messages on the server side, answering the paging rules of API.md. */
export class ServerChat {
  messages: Message[] = []
  constructor(public chatId: number) {}

  add(count: number, fields: Partial<Message> = {}): Message[] {
    const out: Message[] = []
    for (let i = 0; i < count; i++) {
      const m = message(this.chatId, this.messages.length + 1, fields)
      this.messages.push(m)
      out.push(m)
    }
    return out
  }

  page(query: URLSearchParams): Response {
    const limit = Number(query.get('limit') ?? 50)
    const before = query.get('before')
    const after = query.get('after')
    let items: Message[]
    let hasMore: boolean
    if (after !== null) {
      const rest = this.messages.filter((m) => m.seq > Number(after))
      items = rest.slice(0, limit)
      hasMore = rest.length > limit
    } else {
      const rest = before !== null ? this.messages.filter((m) => m.seq < Number(before)) : this.messages
      items = rest.slice(Math.max(0, rest.length - limit))
      hasMore = rest.length > limit
    }
    return json(items, 200, { has_more: hasMore })
  }
}

export class FakeEventSource {
  static instances: FakeEventSource[] = []
  readyState = 0
  onopen: ((e: Event) => void) | null = null
  onerror: ((e: Event) => void) | null = null
  listeners: Record<string, Array<(e: MessageEvent) => void>> = {}
  closed = false

  constructor(public url: string) {
    FakeEventSource.instances.push(this)
  }

  addEventListener(type: string, listener: (e: MessageEvent) => void): void {
    ;(this.listeners[type] ??= []).push(listener)
  }

  close(): void {
    this.closed = true
    this.readyState = 2
  }

  open(): void {
    this.readyState = 1
    this.onopen?.(new Event('open'))
  }

  emit(type: string, data: unknown, id?: string): void {
    const event = new MessageEvent(type, { data: JSON.stringify(data), lastEventId: id ?? '' })
    for (const l of this.listeners[type] ?? []) l(event)
  }

  /** The server answered an HTTP error: the browser closes the source for good. */
  fail(): void {
    this.readyState = 2
    this.onerror?.(new Event('error'))
  }

  /** The connection dropped: the browser reconnects this same source by itself. */
  drop(): void {
    this.readyState = 0
    this.onerror?.(new Event('error'))
  }

  get query(): URLSearchParams {
    return new URL(this.url, 'http://localhost').searchParams
  }
}
