import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Message, Pin, Reaction } from '../src/api/types'
import { composeQuery, emptyFilters, parseQuery } from '../src/lib/search'
import { reacted, reactionLabel, withReaction } from '../src/lib/reactions'
import { useAuthStore } from '../src/stores/auth'
import { useChatsStore } from '../src/stores/chats'
import { retryTiming, useMessagesStore } from '../src/stores/messages'
import { usePinsStore } from '../src/stores/pins'
import { AWAY_AFTER_MS, usePresenceStore } from '../src/stores/presence'
import { useRealtimeStore } from '../src/stores/realtime'
import { FakeEventSource, ServerChat, installFetch, json, message } from './fakes'

const ME = 1
const OTHER = 2
const THIRD = 3

function signedIn() {
  const auth = useAuthStore()
  auth.init()
  auth.apply({
    access_token: 'access-1',
    refresh_token: 'refresh-1',
    token_type: 'Bearer',
    expires_in: 900,
    user: { id: ME, fullname: 'Me', workspace_id: 1, is_bot: false, created_at: '2026-01-01T00:00:00Z' },
    workspace: { id: 1, name: 'W', owner_id: ME },
  })
  return auth
}

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms))

beforeEach(() => {
  setActivePinia(createPinia())
  retryTiming.baseMs = 1
  retryTiming.maxMs = 5
  FakeEventSource.instances = []
})

describe('reactions as data', () => {
  it('adds and removes idempotently, keeping the order of first use', () => {
    let r: Reaction[] = []
    r = withReaction(r, OTHER, '👍', true)
    r = withReaction(r, ME, '🎉', true)
    r = withReaction(r, ME, '👍', true)
    r = withReaction(r, ME, '👍', true) // seen twice (our answer, then the event): counted once
    expect(r).toEqual([
      { emoji: '👍', count: 2, user_ids: [OTHER, ME] },
      { emoji: '🎉', count: 1, user_ids: [ME] },
    ])
    expect(reacted(r, ME, '👍')).toBe(true)
    expect(reacted(r, THIRD, '👍')).toBe(false)
    r = withReaction(r, ME, '🎉', false)
    r = withReaction(r, ME, '🎉', false)
    r = withReaction(r, THIRD, '👍', false) // never given: nothing changes
    expect(r).toEqual([{ emoji: '👍', count: 2, user_ids: [OTHER, ME] }])
    expect(reactionLabel(r[0])).toBe('👍 2')
  })

  it('never mutates the list it is given', () => {
    const before: Reaction[] = [{ emoji: '👍', count: 1, user_ids: [OTHER] }]
    const snapshot = JSON.stringify(before)
    withReaction(before, ME, '👍', true)
    withReaction(before, OTHER, '👍', false)
    expect(JSON.stringify(before)).toBe(snapshot)
  })
})

describe('search query', () => {
  it('composes the filters of API.md after the words', () => {
    expect(composeQuery({ text: ' launch plan ', from: 4, in: 9, before: '2026-03-01', after: '2026-02-01', hasFile: true })).toBe(
      'launch plan from:4 in:9 after:2026-02-01 before:2026-03-01 has:file',
    )
    expect(composeQuery({ ...emptyFilters(), from: 4 })).toBe('from:4')
    expect(composeQuery({ ...emptyFilters(), before: 'not a date' })).toBe('')
    expect(composeQuery(emptyFilters())).toBe('')
  })

  it('reads typed filters back into the controls and leaves other words alone', () => {
    const f = parseQuery('from:4 deploy in:9 http://x.test/a:b has:file after:2026-02-01 before:soon')
    expect(f).toEqual({ text: 'deploy http://x.test/a:b before:soon', from: 4, in: 9, before: '', after: '2026-02-01', hasFile: true })
    expect(composeQuery(parseQuery(composeQuery(f)))).toBe(composeQuery(f))
  })
})

function reactionServer(chatId: number) {
  const server = new ServerChat(chatId)
  const [target] = server.add(1, { sender_id: OTHER, reactions: [{ emoji: '👍', count: 1, user_ids: [OTHER] }] })
  return { server, target }
}

describe('toggling a reaction', () => {
  it('shows it at once, sends POST then DELETE with {emoji}, and takes the server answer', async () => {
    signedIn()
    const { server, target } = reactionServer(20)
    const calls = installFetch(({ method, url, body }) => {
      if (method === 'GET') return server.page(url.searchParams)
      const emoji = (body as { emoji: string }).emoji
      const users = method === 'POST' ? [OTHER, ME] : [OTHER]
      return json({ ...target, reactions: [{ emoji, count: users.length, user_ids: users }] })
    })
    const store = useMessagesStore()
    await store.open(20)
    const first = store.toggleReaction(20, target.id, '👍')
    expect(store.logs[20].items[0].reactions).toEqual([{ emoji: '👍', count: 2, user_ids: [OTHER, ME] }])
    await first
    await store.toggleReaction(20, target.id, '👍')
    expect(store.logs[20].items[0].reactions).toEqual([{ emoji: '👍', count: 1, user_ids: [OTHER] }])
    const writes = calls.filter((c) => c.method !== 'GET')
    expect(writes.map((c) => [c.method, c.path, c.body])).toEqual([
      ['POST', `/api/chat/20/messages/${target.id}/reactions`, { emoji: '👍' }],
      ['DELETE', `/api/chat/20/messages/${target.id}/reactions`, { emoji: '👍' }],
    ])
  })

  it('takes the reaction back when the server refuses it', async () => {
    signedIn()
    const { server, target } = reactionServer(21)
    installFetch(({ method, url }) =>
      method === 'GET' ? server.page(url.searchParams) : json({ code: 'conflict', message: 'The message was deleted' }, 409),
    )
    const store = useMessagesStore()
    await store.open(21)
    await expect(store.toggleReaction(21, target.id, '🎉')).rejects.toMatchObject({ status: 409 })
    expect(store.logs[21].items[0].reactions).toEqual([{ emoji: '👍', count: 1, user_ids: [OTHER] }])
  })

  it('keeps a later toggle when an earlier answer comes back after it', async () => {
    signedIn()
    const { server, target } = reactionServer(22)
    const answers: Array<() => void> = []
    installFetch(({ method, url }) => {
      if (method === 'GET') return server.page(url.searchParams)
      const users = method === 'POST' ? [OTHER, ME] : [OTHER]
      return new Promise<Response>((resolve) => answers.push(() => resolve(json({ ...target, reactions: [{ emoji: '👍', count: users.length, user_ids: users }] }))))
    })
    const store = useMessagesStore()
    await store.open(22)
    const add = store.toggleReaction(22, target.id, '👍')
    const remove = store.toggleReaction(22, target.id, '👍')
    await tick()
    answers[0]() // the add's answer: stale, another toggle is on its way
    await add
    expect(store.logs[22].items[0].reactions).toEqual([{ emoji: '👍', count: 1, user_ids: [OTHER] }])
    answers[1]()
    await remove
    expect(store.logs[22].items[0].reactions).toEqual([{ emoji: '👍', count: 1, user_ids: [OTHER] }])
  })
})

describe('sending in order', () => {
  it('posts the second message of a chat only once the first is acknowledged', async () => {
    signedIn()
    const server = new ServerChat(30)
    const held: Array<() => void> = []
    const posted: string[] = []
    installFetch(({ method, url, body }) => {
      if (method === 'GET') return server.page(url.searchParams)
      const b = body as { content: string; idempotency_key: string }
      posted.push(b.content)
      return new Promise<Response>((resolve) =>
        held.push(() => {
          const [m] = server.add(1, { content: b.content, sender_id: ME, idempotency_key: b.idempotency_key })
          resolve(json(m, 201))
        }),
      )
    })
    const store = useMessagesStore()
    await store.open(30)
    const one = store.send(30, 'one')
    const two = store.send(30, 'two')
    await tick(5)
    expect(posted).toEqual(['one'])
    held[0]()
    await one
    await tick(5)
    expect(posted).toEqual(['one', 'two'])
    held[1]()
    await two
    expect(store.logs[30].items.map((m: Message) => [m.seq, m.content])).toEqual([
      [1, 'one'],
      [2, 'two'],
    ])
  })

  it('goes on with the next message when one is refused', async () => {
    signedIn()
    const server = new ServerChat(31)
    installFetch(({ method, url, body }) => {
      if (method === 'GET') return server.page(url.searchParams)
      const b = body as { content: string }
      if (b.content === 'bad') return json({ code: 'validation_error', message: 'no' }, 400)
      return json(server.add(1, { content: b.content, sender_id: ME })[0], 201)
    })
    const store = useMessagesStore()
    await store.open(31)
    const bad = store.send(31, 'bad')
    const good = store.send(31, 'good')
    expect(await bad).toBeNull()
    expect((await good)?.content).toBe('good')
    expect(store.pendingIn(31).map((p) => [p.content, p.status])).toEqual([['bad', 'failed']])
  })
})

describe('presence', () => {
  it('loads everyone, follows user_presence and reaction events from the stream', async () => {
    signedIn()
    const { server, target } = reactionServer(40)
    let presenceLoads = 0
    installFetch(({ url }) => {
      if (url.pathname === '/api/presence') {
        presenceLoads++
        return json([
          { user_id: ME, status: 'online' },
          { user_id: OTHER, status: 'away' },
        ])
      }
      if (url.pathname === '/api/workspace/chats') return json([])
      if (url.pathname === '/api/users') return json([])
      if (url.pathname === '/api/chat/40/messages') return server.page(url.searchParams)
      return json(null, 404)
    })
    const presence = usePresenceStore()
    const messages = useMessagesStore()
    await messages.open(40)
    const realtime = useRealtimeStore()
    realtime.start((u) => new FakeEventSource(u))
    const es = FakeEventSource.instances[0]
    es.open()
    await tick(5)
    expect(presenceLoads).toBe(1)
    expect(presence.of(OTHER)).toBe('away')
    expect(presence.of(THIRD)).toBe('offline') // unknown: offline
    es.emit('user_presence', { user_id: OTHER, status: 'online' }, '1')
    es.emit('user_presence', { user_id: THIRD, status: 'online' }, '2')
    es.emit('reaction_added', { chat_id: 40, message_id: target.id, user_id: THIRD, emoji: '👍' }, '3')
    es.emit('reaction_added', { chat_id: 40, message_id: target.id, user_id: THIRD, emoji: '👀' }, '4')
    es.emit('reaction_removed', { chat_id: 40, message_id: target.id, user_id: OTHER, emoji: '👍' }, '5')
    await tick(5)
    expect([presence.of(OTHER), presence.of(THIRD)]).toEqual(['online', 'online'])
    expect(messages.logs[40].items[0].reactions).toEqual([
      { emoji: '👍', count: 1, user_ids: [THIRD] },
      { emoji: '👀', count: 1, user_ids: [THIRD] },
    ])
    // A reconnect may have missed changes: presence is asked for again.
    es.drop()
    es.open()
    await tick(5)
    expect(presenceLoads).toBe(2)
    realtime.stop()
  })

  it('shows no dots rather than everyone offline when the server has no presence', async () => {
    signedIn()
    installFetch(() => json({ code: 'not_found', message: 'no' }, 404))
    const presence = usePresenceStore()
    await presence.load()
    expect(presence.available).toBe(false)
  })

  it('marks the person away when idle and online again on input', async () => {
    signedIn()
    const sent: string[] = []
    installFetch(({ url, body }) => {
      if (url.pathname === '/api/presence') {
        const status = (body as { status: string }).status
        sent.push(status)
        return json({ user_id: ME, status })
      }
      return json(null, 404)
    })
    const presence = usePresenceStore()
    const t0 = 1_000_000
    await presence.noteActivity(t0)
    await presence.checkIdle(t0 + AWAY_AFTER_MS - 1)
    expect(sent).toEqual([])
    await presence.checkIdle(t0 + AWAY_AFTER_MS)
    await presence.checkIdle(t0 + AWAY_AFTER_MS + 60_000) // once
    expect(presence.of(ME)).toBe('away')
    await presence.noteActivity(t0 + AWAY_AFTER_MS + 90_000)
    await presence.noteActivity(t0 + AWAY_AFTER_MS + 91_000) // once
    expect(sent).toEqual(['away', 'online'])
    expect(presence.of(ME)).toBe('online')
  })
})

describe('direct message partner', () => {
  it('is the other member, or yourself in a note-to-self', () => {
    signedIn()
    const chats = useChatsStore()
    const base = { id: 1, workspace_id: 1, name: 'dm', description: null, owner_id: ME, last_seq: 0, unread_count: 0, last_message: null, created_at: '' }
    expect(chats.otherMember({ ...base, chat_type: 'Single', member_ids: [ME, OTHER] })).toBe(OTHER)
    expect(chats.otherMember({ ...base, chat_type: 'Single', member_ids: [ME] })).toBe(ME)
    expect(chats.otherMember({ ...base, chat_type: 'Group', member_ids: [ME, OTHER] })).toBeNull()
  })
})

describe('pins', () => {
  const pinOf = (m: Message, at: string): Pin => ({ chat_id: m.chat_id, message: m, pinned_by: OTHER, pinned_at: at })

  it('loads a chat\'s pins, pins and unpins through the API, and follows the stream', async () => {
    signedIn()
    const [older, newer, third] = [message(50, 1), message(50, 2), message(50, 3)]
    const calls = installFetch(({ method, url }) => {
      if (url.pathname === '/api/chat/50/pins') return json([pinOf(older, '2026-01-01T10:00:00Z')])
      if (url.pathname === `/api/chat/50/messages/${newer.id}/pin`) {
        return method === 'POST' ? json(pinOf(newer, '2026-01-01T11:00:00Z')) : json({ chat_id: 50, message_id: newer.id })
      }
      return json(null, 404)
    })
    const pins = usePinsStore()
    await pins.load(50)
    expect(pins.isPinned(50, older.id)).toBe(true)
    await pins.toggle(50, newer.id)
    expect(pins.of(50).map((p) => p.message.id)).toEqual([newer.id, older.id]) // newest pin first
    await pins.toggle(50, newer.id)
    expect(pins.of(50).map((p) => p.message.id)).toEqual([older.id])
    expect(calls.filter((c) => c.method !== 'GET').map((c) => [c.method, c.path])).toEqual([
      ['POST', `/api/chat/50/messages/${newer.id}/pin`],
      ['DELETE', `/api/chat/50/messages/${newer.id}/pin`],
    ])

    const realtime = useRealtimeStore()
    realtime.start((u) => new FakeEventSource(u))
    const es = FakeEventSource.instances[0]
    es.open()
    es.emit('message_pinned', pinOf(third, '2026-01-01T12:00:00Z'), '1')
    es.emit('message_pinned', pinOf(third, '2026-01-01T12:00:00Z'), '2') // seen twice: listed once
    es.emit('message_updated', { ...older, content: 'changed', edited_at: '2026-01-02T00:00:00Z' }, '3')
    es.emit('message_pinned', pinOf(message(51, 1), '2026-01-01T12:00:00Z'), '4') // a chat not loaded
    await tick(5)
    expect(pins.of(50).map((p) => [p.message.id, p.message.content])).toEqual([
      [third.id, third.content],
      [older.id, 'changed'],
    ])
    expect(pins.of(51)).toEqual([])
    es.emit('message_unpinned', { chat_id: 50, message_id: older.id, unpinned_by: OTHER }, '5')
    await tick(5)
    expect(pins.of(50).map((p) => p.message.id)).toEqual([third.id])
    realtime.stop()
  })

  it('keeps a pin that arrives live while the list is being fetched', async () => {
    signedIn()
    const [m1, m2] = [message(53, 1), message(53, 2)]
    let answer: (r: Response) => void = () => {}
    installFetch(() => new Promise<Response>((resolve) => (answer = resolve)))
    const pins = usePinsStore()
    const loading = pins.load(53)
    await tick(1)
    pins.added(pinOf(m2, '2026-01-01T11:00:00Z')) // the fetched answer was made before this pin
    answer(json([pinOf(m1, '2026-01-01T10:00:00Z')]))
    await loading
    expect(pins.of(53).map((p) => p.message.id)).toEqual([m2.id, m1.id])
    pins.removed({ chat_id: 53, message_id: m2.id, unpinned_by: OTHER })
    expect(pins.of(53).map((p) => p.message.id)).toEqual([m1.id])
  })

  it('keeps the list as it was when the server refuses a pin', async () => {
    signedIn()
    const m = message(52, 1)
    installFetch(({ method, url }) => {
      if (url.pathname === '/api/chat/52/pins') return json([])
      if (method === 'POST') return json({ code: 'forbidden', message: 'Only the owner or an admin pins in a channel' }, 403)
      return json(null, 404)
    })
    const pins = usePinsStore()
    await pins.load(52)
    await expect(pins.toggle(52, m.id)).rejects.toThrow('Only the owner or an admin pins in a channel')
    expect(pins.of(52)).toEqual([])
  })
})
