import { defineStore } from 'pinia'
import { api, ApiError, newIdempotencyKey } from '../api/http'
import type { FileInfo, Message, MessageVersion, ReactionEvent, Receipts } from '../api/types'
import { reacted, withReaction } from '../lib/reactions'
import { useAuthStore } from './auth'

export const PAGE_SIZE = 50
const FILL_PAGE = 200

/** Timings of the send retry loop (tests shorten them). */
export const retryTiming = { baseMs: 1_000, maxMs: 10_000 }

export interface ChatLog {
  items: Message[]
  hasMoreBefore: boolean
  loaded: boolean
  loadingOlder: boolean
}

export interface PendingMessage {
  key: string
  chat_id: number
  content: string
  reply_to: number | null
  files: FileInfo[]
  status: 'sending' | 'failed'
  error: string | null
  attempts: number
  created_at: string
}

let wakers: Array<() => void> = []

/**
 * Sends of one chat go out one after another, in the order they were written: the server numbers messages as
 * their requests arrive, so two sends in flight at once could swap places.
 */
let sendQueues = new Map<number, Promise<unknown>>()

function queued<T>(chatId: number, job: () => Promise<T>): Promise<T> {
  const before = sendQueues.get(chatId) ?? Promise.resolve()
  const run = before.then(job, job)
  const tail = run.catch(() => undefined)
  sendQueues.set(chatId, tail)
  void tail.then(() => {
    if (sendQueues.get(chatId) === tail) sendQueues.delete(chatId)
  })
  return run
}

/** Cut every retry wait short (the browser came back online, the stream reconnected). */
export function wakeRetries(): void {
  const now = wakers
  wakers = []
  for (const w of now) w()
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer)
      wakers = wakers.filter((w) => w !== done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    wakers.push(done)
  })
}

/** Merge messages into an ascending, seq-unique list; a later copy of a seq (an edit, a delete) replaces the earlier. */
export function mergeBySeq(items: Message[], incoming: Message[]): Message[] {
  if (incoming.length === 0) return items
  const bySeq = new Map<number, Message>()
  for (const m of items) bySeq.set(m.seq, m)
  for (const m of incoming) {
    const old = bySeq.get(m.seq)
    if (!old || newer(m, old)) bySeq.set(m.seq, m)
  }
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq)
}

function newer(a: Message, b: Message): boolean {
  if (a.deleted !== b.deleted) return a.deleted
  return (a.edited_at ?? '') >= (b.edited_at ?? '')
}

/** The first hole in an ascending list: the seq after which messages are missing, or null. */
export function firstGap(items: Message[]): number | null {
  for (let i = 1; i < items.length; i++) if (items[i].seq > items[i - 1].seq + 1) return items[i - 1].seq
  return null
}

export const useMessagesStore = defineStore('messages', {
  state: () => ({
    logs: {} as Record<number, ChatLog>,
    pending: [] as PendingMessage[],
    filling: {} as Record<number, boolean>,
    /** message id -> reaction toggles of ours still waiting for the server */
    reacting: {} as Record<number, number>,
    /** chat id (or `chat:message` for a thread) -> what was typed there and not sent yet (kept while one looks elsewhere) */
    drafts: {} as Record<string, string>,
  }),
  getters: {
    log: (s) => (chatId: number): ChatLog | undefined => s.logs[chatId],
    pendingIn: (s) => (chatId: number) => s.pending.filter((p) => p.chat_id === chatId),
  },
  actions: {
    ensureLog(chatId: number): ChatLog {
      if (!this.logs[chatId]) this.logs[chatId] = { items: [], hasMoreBefore: true, loaded: false, loadingOlder: false }
      return this.logs[chatId]
    },
    insert(chatId: number, messages: Message[]) {
      const log = this.ensureLog(chatId)
      log.items = mergeBySeq(log.items, messages)
      const keys = new Set(messages.map((m) => m.idempotency_key).filter(Boolean))
      if (keys.size) this.pending = this.pending.filter((p) => !(p.chat_id === chatId && keys.has(p.key)))
    },
    async open(chatId: number) {
      const log = this.ensureLog(chatId)
      if (log.loaded) {
        await this.fillAfter(chatId)
        return
      }
      const { data, meta } = await api.get<Message[]>(`/api/chat/${chatId}/messages`, { limit: PAGE_SIZE })
      this.insert(chatId, data)
      log.hasMoreBefore = Boolean(meta?.has_more)
      log.loaded = true
      await this.fillGaps(chatId)
    },
    /** Reload what we hold of a chat (after `resync_required`). */
    async reload(chatId: number) {
      const log = this.ensureLog(chatId)
      log.loaded = false
      log.items = []
      await this.open(chatId)
    },
    async loadOlder(chatId: number): Promise<number> {
      const log = this.ensureLog(chatId)
      if (!log.loaded || !log.hasMoreBefore || log.loadingOlder || log.items.length === 0) return 0
      log.loadingOlder = true
      try {
        const { data, meta } = await api.get<Message[]>(`/api/chat/${chatId}/messages`, { limit: PAGE_SIZE, before: log.items[0].seq })
        this.insert(chatId, data)
        log.hasMoreBefore = Boolean(meta?.has_more)
        return data.length
      } finally {
        log.loadingOlder = false
      }
    },
    /** A message from the live stream: merge it, and fetch whatever lies between it and what we hold. */
    async receive(message: Message) {
      const log = this.logs[message.chat_id]
      if (log && !log.loaded) {
        this.insert(message.chat_id, [message])
        return
      }
      if (!log) {
        // Not open yet: keep it so the send that created it is acknowledged; the chat loads in full when opened.
        this.pending = this.pending.filter((p) => !(p.chat_id === message.chat_id && p.key === message.idempotency_key))
        return
      }
      const last = log.items.length ? log.items[log.items.length - 1].seq : 0
      this.insert(message.chat_id, [message])
      if (last === 0 && message.seq > 1) {
        // The chat was empty when loaded: everything before this one is missing.
        const { data } = await api.get<Message[]>(`/api/chat/${message.chat_id}/messages`, { limit: FILL_PAGE, after: 0 })
        this.insert(message.chat_id, data)
      }
      await this.fillGaps(message.chat_id)
    },
    /**
     * A message edited or deleted (from the live stream). Only a copy within what we hold is replaced: one
     * older than the oldest page loaded would sit alone above a hole (scrolling up pages back from the
     * oldest message held, so the hole would never fill), and the list must stay whole for thread counts.
     */
    async changed(message: Message) {
      const log = this.logs[message.chat_id]
      if (!log) return
      if (!log.loaded) {
        // The first page is on its way: only a copy already held is replaced (whichever is newer wins when
        // the page lands); any other would sit above the page and have everything between fetched.
        if (log.items.some((m) => m.seq === message.seq)) this.insert(message.chat_id, [message])
        return
      }
      const oldest = log.items[0]
      if (oldest && message.seq < oldest.seq && log.hasMoreBefore) return
      await this.receive(message)
    },
    /** Fetch `after=` pages until the list has no hole. One fill per chat at a time. */
    async fillGaps(chatId: number) {
      if (this.filling[chatId]) return
      this.filling[chatId] = true
      try {
        for (let round = 0; round < 50; round++) {
          const log = this.ensureLog(chatId)
          const gapAfter = firstGap(log.items)
          if (gapAfter === null) return
          const { data } = await api.get<Message[]>(`/api/chat/${chatId}/messages`, { limit: FILL_PAGE, after: gapAfter })
          if (data.length === 0) return
          this.insert(chatId, data)
        }
      } finally {
        this.filling[chatId] = false
      }
    },
    /** Fetch everything after the newest message we hold (coming back to a chat, or online again). */
    async fillAfter(chatId: number) {
      const log = this.logs[chatId]
      if (!log?.loaded) return
      for (let round = 0; round < 50; round++) {
        const last = log.items.length ? log.items[log.items.length - 1].seq : 0
        const { data, meta } = await api.get<Message[]>(`/api/chat/${chatId}/messages`, { limit: FILL_PAGE, after: last })
        this.insert(chatId, data)
        if (!meta?.has_more || data.length === 0) break
      }
      await this.fillGaps(chatId)
    },
    /** Show the message at once as pending, then send it until the server acknowledges it. */
    send(chatId: number, content: string, replyTo: number | null = null, files: FileInfo[] = []): Promise<Message | null> {
      const pending: PendingMessage = {
        key: newIdempotencyKey(),
        chat_id: chatId,
        content,
        reply_to: replyTo,
        files,
        status: 'sending',
        error: null,
        attempts: 0,
        created_at: new Date().toISOString(),
      }
      this.pending.push(pending)
      return queued(chatId, () => this.deliver(pending.key))
    },
    retry(key: string): Promise<Message | null> {
      const p = this.pending.find((x) => x.key === key)
      if (!p) return Promise.resolve(null)
      p.status = 'sending'
      p.error = null
      return this.deliver(key)
    },
    discard(key: string) {
      this.pending = this.pending.filter((p) => p.key !== key)
    },
    async deliver(key: string): Promise<Message | null> {
      for (;;) {
        const p = this.pending.find((x) => x.key === key)
        if (!p) return null // acknowledged by the live stream meanwhile, or discarded
        try {
          const body: Record<string, unknown> = { content: p.content, idempotency_key: p.key }
          if (p.reply_to) body.reply_to = p.reply_to
          if (p.files.length) body.files = p.files.map((f) => f.id)
          // The key goes in the header as well: the gateway may then send the request again to another
          // instance when a connection breaks before the answer, knowing that a repeat is harmless.
          const { data } = await api.post<Message>(`/api/chat/${p.chat_id}/messages`, body, {
            headers: { 'Idempotency-Key': p.key },
          })
          this.insert(p.chat_id, [data])
          this.pending = this.pending.filter((x) => x.key !== key)
          // Messages of others may have come in between ours and what we held, ahead of the live stream.
          if (this.logs[p.chat_id]?.loaded) void this.fillGaps(p.chat_id).catch(() => {})
          return data
        } catch (e) {
          const current = this.pending.find((x) => x.key === key)
          if (!current) return null
          if (e instanceof ApiError && !e.retriable) {
            current.status = 'failed'
            current.error = e.message
            return null
          }
          current.attempts += 1
          await pause(Math.min(retryTiming.maxMs, retryTiming.baseMs * 2 ** Math.min(current.attempts - 1, 6)))
        }
      }
    },
    /** The texts a message had before its edits, oldest first. */
    async versions(chatId: number, messageId: number): Promise<MessageVersion[]> {
      return (await api.get<MessageVersion[]>(`/api/chat/${chatId}/messages/${messageId}/history`)).data
    },
    async receipts(chatId: number, messageId: number): Promise<Receipts> {
      return (await api.get<Receipts>(`/api/chat/${chatId}/messages/${messageId}/receipts`)).data
    },
    async edit(chatId: number, messageId: number, content: string) {
      const { data } = await api.patch<Message>(`/api/chat/${chatId}/messages/${messageId}`, { content })
      this.insert(chatId, [data])
    },
    async remove(chatId: number, messageId: number) {
      const { data } = await api.del<Message | null>(`/api/chat/${chatId}/messages/${messageId}`)
      if (data && typeof data === 'object' && 'seq' in data) this.insert(chatId, [data])
      else {
        const log = this.logs[chatId]
        const m = log?.items.find((x) => x.id === messageId)
        if (m) this.insert(chatId, [{ ...m, deleted: true, content: '', edited_at: new Date().toISOString() }])
      }
    },
    /** Replace one message's reactions where we hold it (the list keeps its seq order and identity otherwise). */
    setReactions(chatId: number, messageId: number, update: (m: Message) => Message['reactions']) {
      const log = this.logs[chatId]
      if (!log) return
      const i = log.items.findIndex((m) => m.id === messageId)
      if (i < 0) return
      const m = log.items[i]
      log.items[i] = { ...m, reactions: update(m) }
    },
    /** `reaction_added` / `reaction_removed` from the live stream. */
    applyReaction(event: ReactionEvent, add: boolean) {
      this.setReactions(event.chat_id, event.message_id, (m) => withReaction(m.reactions ?? [], event.user_id, event.emoji, add))
    },
    /**
     * Give or take back our reaction: shown at once, then sent. The server's answer (the message with all its
     * reactions) replaces ours unless another toggle of that message is still on its way.
     */
    async toggleReaction(chatId: number, messageId: number, emoji: string) {
      const me = useAuthStore().user?.id
      const m = this.logs[chatId]?.items.find((x) => x.id === messageId)
      if (me === undefined || !m || m.deleted) return
      const add = !reacted(m.reactions, me, emoji)
      this.applyReaction({ chat_id: chatId, message_id: messageId, user_id: me, emoji }, add)
      this.reacting[messageId] = (this.reacting[messageId] ?? 0) + 1
      const path = `/api/chat/${chatId}/messages/${messageId}/reactions`
      try {
        const { data } = add ? await api.post<Message>(path, { emoji }) : await api.del<Message>(path, { emoji })
        if (this.reacting[messageId] === 1 && data && Array.isArray(data.reactions)) {
          this.setReactions(chatId, messageId, () => data.reactions)
        }
      } catch (e) {
        this.applyReaction({ chat_id: chatId, message_id: messageId, user_id: me, emoji }, !add)
        throw e
      } finally {
        this.reacting[messageId] -= 1
        if (this.reacting[messageId] <= 0) delete this.reacting[messageId]
      }
    },
    reset() {
      sendQueues = new Map()
      this.$reset()
    },
  },
})
