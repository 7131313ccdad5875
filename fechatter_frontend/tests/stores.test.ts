import { createPinia, setActivePinia } from 'pinia'
import { beforeEach, describe, expect, it } from 'vitest'
import type { Chat, Message } from '../src/api/types'
import { useAuthStore } from '../src/stores/auth'
import { useChatsStore } from '../src/stores/chats'
import { firstGap, mergeBySeq, retryTiming, useMessagesStore, wakeRetries } from '../src/stores/messages'
import { replyCounts } from '../src/lib/threads'
import { useRealtimeStore } from '../src/stores/realtime'
import { FakeEventSource, ServerChat, installFetch, json, message } from './fakes'

const ME = 1
const OTHER = 2

function session(token = 'access-1', refresh = 'refresh-1') {
  return {
    access_token: token,
    refresh_token: refresh,
    token_type: 'Bearer',
    expires_in: 900,
    user: { id: ME, fullname: 'Me', workspace_id: 1, is_bot: false, created_at: '2026-01-01T00:00:00Z' },
    workspace: { id: 1, name: 'W', owner_id: ME },
  }
}

function chat(id: number, fields: Partial<Chat> = {}): Chat {
  return {
    id,
    workspace_id: 1,
    name: `chat ${id}`,
    chat_type: 'Group',
    description: null,
    owner_id: ME,
    member_ids: [ME, OTHER],
    last_seq: 0,
    unread_count: 0,
    last_message: null,
    created_at: '2026-01-01T00:00:00Z',
    ...fields,
  }
}

function signedIn() {
  const auth = useAuthStore()
  auth.init()
  auth.apply(session())
  return auth
}

beforeEach(() => {
  setActivePinia(createPinia())
  retryTiming.baseMs = 1
  retryTiming.maxMs = 5
})

describe('mergeBySeq / firstGap', () => {
  it('keeps one message per seq, in ascending order, whatever the arrival order', () => {
    const [a, b, c] = [message(1, 1), message(1, 2), message(1, 3)]
    const merged = mergeBySeq(mergeBySeq([c], [a, c]), [b, a])
    expect(merged.map((m) => m.seq)).toEqual([1, 2, 3])
  })

  it('lets an edit or a delete replace the earlier copy, never the other way round', () => {
    const original = message(1, 1)
    const edited = { ...original, content: 'edited', edited_at: '2026-01-01T13:00:00Z' }
    const deleted = { ...original, content: '', deleted: true, edited_at: '2026-01-01T14:00:00Z' }
    expect(mergeBySeq([original], [edited])[0].content).toBe('edited')
    expect(mergeBySeq([edited], [original])[0].content).toBe('edited')
    expect(mergeBySeq([edited], [deleted])[0].deleted).toBe(true)
    expect(mergeBySeq([deleted], [edited])[0].deleted).toBe(true)
  })

  it('finds the first hole', () => {
    expect(firstGap([message(1, 1), message(1, 2), message(1, 5), message(1, 9)])).toBe(2)
    expect(firstGap([message(1, 3), message(1, 4)])).toBeNull()
  })
})

describe('messages store', () => {
  it('loads the latest page, then older pages upward by `before`', async () => {
    signedIn()
    const server = new ServerChat(7)
    server.add(120)
    const calls = installFetch(({ url }) => server.page(url.searchParams))
    const store = useMessagesStore()
    await store.open(7)
    expect(store.logs[7].items.map((m) => m.seq)).toEqual(Array.from({ length: 50 }, (_, i) => 71 + i))
    expect(store.logs[7].hasMoreBefore).toBe(true)
    await store.loadOlder(7)
    await store.loadOlder(7)
    expect(calls.filter((c) => c.query.before).map((c) => c.query.before)).toEqual(['71', '21'])
    expect(store.logs[7].items.map((m) => m.seq)).toEqual(Array.from({ length: 120 }, (_, i) => i + 1))
    expect(store.logs[7].hasMoreBefore).toBe(false)
    expect(await store.loadOlder(7)).toBe(0)
  })

  it('dedupes live messages by (chat, seq) and keeps them in order', async () => {
    signedIn()
    const server = new ServerChat(3)
    server.add(3)
    installFetch(({ url }) => server.page(url.searchParams))
    const store = useMessagesStore()
    await store.open(3)
    const [m4, m5] = server.add(2)
    await store.receive(m5)
    await store.receive(m4)
    await store.receive(m5)
    await store.receive(m4)
    expect(store.logs[3].items.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5])
  })

  it('applies an edit or a delete only within what it holds, so the list keeps no hole (threads count on it)', async () => {
    signedIn()
    const server = new ServerChat(5)
    const [first] = server.add(80)
    const reply = server.add(1, { reply_to: first.id })[0]
    installFetch(({ url }) => server.page(url.searchParams))
    const store = useMessagesStore()
    await store.open(5)
    expect(store.logs[5].items[0].seq).toBe(32)
    // An older message edited: not held, so not added above a hole.
    await store.changed({ ...first, content: 'edited', edited_at: '2026-01-02T00:00:00Z' })
    expect(store.logs[5].items[0].seq).toBe(32)
    expect(firstGap(store.logs[5].items)).toBeNull()
    // One held is replaced; scrolling up brings the older ones whole, the edit included.
    await store.changed({ ...reply, deleted: true, content: '', edited_at: '2026-01-02T00:00:00Z' })
    expect(store.logs[5].items.at(-1)?.deleted).toBe(true)
    server.messages[0] = { ...first, content: 'edited', edited_at: '2026-01-02T00:00:00Z' }
    while ((await store.loadOlder(5)) > 0) continue
    expect(store.logs[5].items.map((m) => m.seq)).toEqual(Array.from({ length: 81 }, (_, i) => i + 1))
    expect(store.logs[5].items[0].content).toBe('edited')
    expect(replyCounts(store.logs[5].items).get(first.id)).toBeUndefined()
  })

  it('fills a seq gap with `after=` pages', async () => {
    signedIn()
    const server = new ServerChat(4)
    server.add(2)
    const calls = installFetch(({ url }) => server.page(url.searchParams))
    const store = useMessagesStore()
    await store.open(4)
    const added = server.add(300)
    await store.receive(added[added.length - 1]) // seq 302 arrives; 3..301 were missed
    expect(calls.filter((c) => c.query.after).map((c) => c.query.after)).toEqual(['2', '202'])
    expect(store.logs[4].items.map((m) => m.seq)).toEqual(Array.from({ length: 302 }, (_, i) => i + 1))
  })

  it('fills what was sent before the first live message into a chat that was empty when opened', async () => {
    signedIn()
    const server = new ServerChat(5)
    installFetch(({ url }) => server.page(url.searchParams))
    const store = useMessagesStore()
    await store.open(5)
    const added = server.add(3)
    await store.receive(added[2])
    expect(store.logs[5].items.map((m) => m.seq)).toEqual([1, 2, 3])
  })

  it('shows a send as pending and retries it with the same idempotency key until acknowledged', async () => {
    signedIn()
    const server = new ServerChat(9)
    let failures = 3
    const stored = new Map<string, Message>()
    const headerKeys: string[] = []
    const calls = installFetch(({ method, url, body, headers }) => {
      if (method === 'GET') return server.page(url.searchParams)
      headerKeys.push(headers['Idempotency-Key'])
      if (failures-- > 0) return failures % 2 ? json({ code: 'unavailable', message: 'down' }, 503) : Promise.reject(new TypeError('Failed to fetch'))
      const b = body as { content: string; idempotency_key: string }
      const known = stored.get(b.idempotency_key)
      if (known) return json(known, 200)
      const [m] = server.add(1, { content: b.content, sender_id: ME, idempotency_key: b.idempotency_key })
      stored.set(b.idempotency_key, m)
      return json(m, 201)
    })
    const store = useMessagesStore()
    await store.open(9)
    const sent = store.send(9, 'hello')
    expect(store.pendingIn(9).map((p) => [p.content, p.status])).toEqual([['hello', 'sending']])
    const result = await sent
    expect(result?.content).toBe('hello')
    const posts = calls.filter((c) => c.method === 'POST')
    expect(posts).toHaveLength(4)
    expect(new Set(posts.map((c) => (c.body as { idempotency_key: string }).idempotency_key)).size).toBe(1)
    // The header carries it too, so that the gateway may repeat a send whose connection broke.
    expect(headerKeys).toEqual(posts.map((c) => (c.body as { idempotency_key: string }).idempotency_key))
    expect(store.pendingIn(9)).toEqual([])
    // The stream then delivers the same message: still one copy.
    await store.receive(result as Message)
    expect(store.logs[9].items.map((m) => m.content)).toEqual(['hello'])
  })

  it('stops retrying once the live stream has acknowledged the send', async () => {
    signedIn()
    const server = new ServerChat(10)
    let release: (() => void) | null = null
    installFetch(({ method, url }) => {
      if (method === 'GET') return server.page(url.searchParams)
      return new Promise<Response>((resolve) => {
        release = () => resolve(json({ code: 'unavailable', message: 'down' }, 503))
      })
    })
    const store = useMessagesStore()
    await store.open(10)
    const sent = store.send(10, 'via the stream')
    const key = store.pendingIn(10)[0].key
    await new Promise((r) => setTimeout(r, 0))
    const [m] = server.add(1, { content: 'via the stream', sender_id: ME, idempotency_key: key })
    await store.receive(m)
    ;(release as unknown as () => void)()
    expect(await sent).toBeNull()
    expect(store.pendingIn(10)).toEqual([])
    expect(store.logs[10].items.map((x) => x.content)).toEqual(['via the stream'])
  })

  it('marks a send the server refuses as failed, without retrying', async () => {
    signedIn()
    const calls = installFetch(({ method }) =>
      method === 'GET' ? json([], 200, { has_more: false }) : json({ code: 'validation_error', message: 'content is too long', field: 'content' }, 400),
    )
    const store = useMessagesStore()
    await store.open(11)
    expect(await store.send(11, 'x')).toBeNull()
    expect(store.pendingIn(11).map((p) => [p.status, p.error])).toEqual([['failed', 'content is too long']])
    expect(calls.filter((c) => c.method === 'POST')).toHaveLength(1)
  })

  it('wakes waiting retries at once when asked (back online)', async () => {
    signedIn()
    retryTiming.baseMs = 60_000
    retryTiming.maxMs = 60_000
    let down = true
    installFetch(({ method, body }) => {
      if (method === 'GET') return json([], 200, { has_more: false })
      if (down) return Promise.reject(new TypeError('Failed to fetch'))
      return json(message(12, 1, { content: (body as { content: string }).content, sender_id: ME }), 201)
    })
    const store = useMessagesStore()
    await store.open(12)
    const sent = store.send(12, 'later')
    await new Promise((r) => setTimeout(r, 5))
    down = false
    wakeRetries()
    expect((await sent)?.content).toBe('later')
  })
})

describe('chats store and live events', () => {
  it('counts unread messages from others once per seq, and clears them when read', async () => {
    signedIn()
    let readSeq = 0
    installFetch(({ method, url, body }) => {
      if (url.pathname === '/api/workspace/chats') return json([chat(1, { last_seq: 2, unread_count: 2 })])
      if (url.pathname === '/api/users') return json([])
      if (method === 'POST' && url.pathname === '/api/chat/1/read') {
        readSeq = (body as { seq: number }).seq
        return json({ chat_id: 1, last_read_seq: readSeq, unread_count: 0 })
      }
      return json(null, 404)
    })
    const chats = useChatsStore()
    await chats.load()
    chats.noteMessage(message(1, 2), false) // already counted by the server
    chats.noteMessage(message(1, 3, { mentions: [ME] }), false)
    chats.noteMessage(message(1, 3, { mentions: [ME] }), false)
    expect(chats.byId(1)?.unread_count).toBe(3)
    expect(chats.byId(1)?.unread_mentions).toBe(1)
    // Ours, sent from another device (mentioning ourselves changes nothing): sending moved our read position
    // to it, as the server counts.
    chats.noteMessage(message(1, 4, { sender_id: ME, mentions: [ME] }), false)
    expect(chats.byId(1)?.unread_count).toBe(0)
    expect(chats.byId(1)?.unread_mentions).toBe(0)
    chats.noteMessage(message(1, 5), false)
    expect(chats.byId(1)?.unread_count).toBe(1)
    await chats.markRead(1, 5)
    expect(readSeq).toBe(5)
    expect(chats.byId(1)?.unread_count).toBe(0)
    chats.noteMessage(message(1, 6), true) // in the open chat: read, not unread
    expect(chats.byId(1)?.unread_count).toBe(0)
  })

  it('counts unread mentions of the caller with the unread messages, and asks the server after a partial read', async () => {
    signedIn()
    // The server: messages 1-4, of which 2 and 4 mention the caller (3 mentions someone else).
    let lastRead = 0
    const serverChat = () =>
      chat(1, {
        last_seq: 4,
        unread_count: 4 - lastRead,
        unread_mentions: [2, 4].filter((seq) => seq > lastRead).length,
      })
    installFetch(({ method, url, body }) => {
      if (url.pathname === '/api/workspace/chats') return json([serverChat()])
      if (url.pathname === '/api/users') return json([])
      if (method === 'POST' && url.pathname === '/api/chat/1/read') {
        lastRead = (body as { seq: number }).seq
        return json({ chat_id: 1, last_read_seq: lastRead, unread_count: 4 - lastRead })
      }
      return json(null, 404)
    })
    const chats = useChatsStore()
    await chats.load()
    chats.chats[0] = chat(1, { last_seq: 1, unread_count: 1, unread_mentions: 0 }) // as it was before 2-4 arrived
    chats.noteMessage(message(1, 2, { mentions: [ME] }), false)
    chats.noteMessage(message(1, 3, { mentions: [OTHER] }), false) // someone else's mention
    chats.noteMessage(message(1, 4, { mentions: [ME] }), false)
    expect(chats.byId(1)?.unread_mentions).toBe(2)
    await chats.markRead(1, 2) // part of the way: the server tells which mentions are left
    expect(chats.byId(1)?.unread_count).toBe(2)
    expect(chats.byId(1)?.unread_mentions).toBe(1)
    await chats.markRead(1, 4)
    expect(chats.byId(1)?.unread_mentions).toBe(0)
  })

  it('changes a chat through its details: rename, add, remove and archive keep the list in step', async () => {
    signedIn()
    let server = chat(1) // the chat as the server keeps it
    const calls = installFetch(({ method, url, body }) => {
      if (url.pathname === '/api/workspace/chats') return json([server])
      if (url.pathname === '/api/users') return json([])
      if (method === 'PATCH' && url.pathname === '/api/chat/1') server = { ...server, ...(body as object) }
      else if (method === 'POST' && url.pathname === '/api/chat/1/members') {
        server = { ...server, member_ids: [...server.member_ids, ...(body as { user_ids: number[] }).user_ids] }
      } else if (method === 'DELETE' && url.pathname === '/api/chat/1/members/2') {
        server = { ...server, member_ids: server.member_ids.filter((id) => id !== 2) }
        return json({ chat_id: 1, user_id: 2 })
      } else if (method === 'POST' && url.pathname === '/api/chat/1/archive') server = { ...server, archived: true }
      else return json({ code: 'not_found', message: 'no' }, 404)
      return json(server)
    })
    const chats = useChatsStore()
    await chats.load()
    await chats.update(1, { name: 'roadmap', description: 'next' })
    expect(chats.byId(1)).toMatchObject({ name: 'roadmap', description: 'next' })
    await chats.addMembers(1, [3])
    expect(chats.byId(1)?.member_ids).toEqual([ME, OTHER, 3])
    await chats.removeMember(1, OTHER)
    expect(chats.byId(1)?.member_ids).toEqual([ME, 3])
    await chats.setArchived(1, true)
    expect(chats.byId(1)?.archived).toBe(true)
    expect(calls.map((c) => `${c.method} ${c.path}`)).toContain('DELETE /api/chat/1/members/2')
    // A refusal reaches the caller (the dialog shows it) and changes nothing.
    await expect(chats.removeMember(1, 99)).rejects.toThrow()
    expect(chats.byId(1)?.member_ids).toEqual([ME, 3])
  })

  it('routes stream events to the stores and reloads everything on resync_required', async () => {
    signedIn()
    const server = new ServerChat(1)
    server.add(2)
    let chatLoads = 0
    installFetch(({ url }) => {
      if (url.pathname === '/api/workspace/chats') {
        chatLoads++
        return json([chat(1, { last_seq: server.messages.length })])
      }
      if (url.pathname === '/api/users') return json([])
      if (url.pathname === '/api/chat/1/messages') return server.page(url.searchParams)
      return json(null, 404)
    })
    FakeEventSource.instances = []
    const chats = useChatsStore()
    const messages = useMessagesStore()
    const realtime = useRealtimeStore()
    await chats.load()
    await messages.open(1)
    realtime.start((url) => new FakeEventSource(url))
    const es = FakeEventSource.instances[0]
    es.open()
    const [m3] = server.add(1)
    es.emit('new_message', m3, '1')
    es.emit('typing_started', { chat_id: 1, user_id: OTHER }, '2')
    es.emit('message_updated', { ...m3, content: 'changed', edited_at: '2026-01-02T00:00:00Z' }, '3')
    server.add(2)
    es.emit('resync_required', { reason: 'history_expired' })
    await new Promise((r) => setTimeout(r, 20))
    expect(messages.logs[1].items.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5])
    expect(chats.byId(1)?.last_seq).toBe(5)
    expect(chatLoads).toBe(2)
    expect(chats.typingNames(1, Date.now())).toEqual([`User ${OTHER}`])
    realtime.stop()
  })
})

describe('leaving a workspace', () => {
  it('names the messages of someone who left the workspace, and keeps them out of the members', async () => {
    signedIn()
    installFetch(({ url }) => {
      if (url.pathname === '/api/users') return json([session().user])
      if (url.pathname === '/api/workspace/former-members') {
        return json([{ id: 7, fullname: 'Ann', left_at: '2026-01-02T00:00:00Z', removed_by: ME }])
      }
      return json(null, 404)
    })
    const chats = useChatsStore()
    await chats.loadUsers()
    expect(chats.userName(7)).toBe('Ann (left)')
    expect(chats.userName(ME)).toBe('Me')
    expect(chats.userName(8)).toBe('User 8')
    expect(Object.keys(chats.users)).toEqual([String(ME)])
  })

  it('ends the session with a notice when the stream says the person was removed, and only then', async () => {
    const auth = signedIn()
    installFetch(() => json([]))
    FakeEventSource.instances = []
    const realtime = useRealtimeStore()
    realtime.start((url) => new FakeEventSource(url))
    const es = FakeEventSource.instances[0]
    es.open()
    es.emit('workspace_member_removed', { workspace_id: 1, user_id: OTHER, removed_by: ME }, '1')
    await new Promise((r) => setTimeout(r, 10))
    expect(auth.signedIn).toBe(true)
    es.emit('workspace_member_removed', { workspace_id: 1, user_id: ME, removed_by: 9 }, '2')
    await new Promise((r) => setTimeout(r, 10))
    expect(auth.signedIn).toBe(false)
    expect(auth.notice).toBe('You were removed from W.')
    realtime.stop()
  })

  it('reloads the people once for a burst of membership events', async () => {
    signedIn()
    const calls = installFetch(({ url }) => json(url.pathname === '/api/users' ? [session().user] : []))
    const chats = useChatsStore()
    for (let i = 0; i < 30; i++) chats.refreshPeopleSoon()
    await new Promise((r) => setTimeout(r, 400))
    expect(calls.filter((c) => c.path === '/api/users')).toHaveLength(1)
  })

  it('forgets the notice of a session that ended once a new one begins', () => {
    const auth = signedIn()
    auth.leftWorkspace(3)
    expect(auth.notice).toBe('You were removed from W.')
    auth.apply(session())
    expect(auth.notice).toBe('')
  })

  it('leaves the workspace by removing oneself, and says so', async () => {
    const auth = signedIn()
    const calls = installFetch(() => json({ user_id: ME, chats_left: [] }))
    await auth.leaveWorkspace()
    expect(calls.map((c) => [c.method, c.path])).toEqual([['DELETE', `/api/workspace/members/${ME}`]])
    expect(auth.signedIn).toBe(false)
    expect(auth.notice).toBe('You left W.')
  })

  it('signs in with an invite code into its workspace', async () => {
    const auth = useAuthStore()
    auth.init()
    const calls = installFetch(() => json(session()))
    await auth.signin('me@example.com', 'pw pw pw pw', 'abc123')
    expect(calls[0].body).toEqual({ email: 'me@example.com', password: 'pw pw pw pw', invite_code: 'abc123' })
    expect(auth.signedIn).toBe(true)
  })
})

describe('auth store', () => {
  it('refreshes once on a 401 and retries the request with the new token', async () => {
    const auth = signedIn()
    let refreshes = 0
    const calls = installFetch(({ url, headers, body }) => {
      if (url.pathname === '/api/refresh') {
        refreshes++
        expect(body).toEqual({ refresh_token: 'refresh-1' })
        return json(session('access-2', 'refresh-2'))
      }
      if (headers.Authorization === 'Bearer access-2') return json([])
      return json({ code: 'unauthorized', message: 'expired' }, 401)
    })
    const chats = useChatsStore()
    await Promise.all([chats.reloadChats(), chats.loadUsers()])
    expect(refreshes).toBe(1)
    expect(auth.accessToken).toBe('access-2')
    expect(auth.refreshToken).toBe('refresh-2')
    expect(calls.filter((c) => c.path === '/api/workspace/chats').map((c) => c.auth)).toEqual(['Bearer access-1', 'Bearer access-2'])
  })

  it('moves to the session of another workspace and revokes the one left behind', async () => {
    const auth = signedIn()
    const other = { ...session('access-w2', 'refresh-w2'), workspace: { id: 2, name: 'Other', owner_id: 9 } }
    const calls = installFetch(({ url }) => {
      if (url.pathname === '/api/workspaces/2/switch' || url.pathname === '/api/workspaces/join') return json(other)
      if (url.pathname === '/api/logout') return json(null)
      return json({ code: 'not_found', message: 'no' }, 404)
    })
    await auth.switchWorkspace(2)
    expect(auth.workspace?.name).toBe('Other')
    expect(auth.accessToken).toBe('access-w2')
    await Promise.resolve()
    const logout = calls.find((c) => c.path === '/api/logout')
    expect(logout?.body).toEqual({ refresh_token: 'refresh-1' })
    expect(logout?.auth).toBe('Bearer access-w2')
    // An invite link is as good as its code.
    await auth.joinWorkspace(' https://chat.example/invite/abc123 ')
    expect(calls.find((c) => c.path === '/api/workspaces/join')?.body).toEqual({ invite_code: 'abc123' })
  })

  it('does not refresh the session when a password is refused', async () => {
    const auth = signedIn()
    const calls = installFetch(({ url }) => {
      if (url.pathname === '/api/users/change-password') {
        return json({ code: 'invalid_credentials', message: 'The current password is incorrect' }, 401)
      }
      return json(session('access-2', 'refresh-2'))
    })
    await expect(auth.changePassword('wrong', 'new password 1')).rejects.toMatchObject({ code: 'invalid_credentials' })
    expect(calls.map((c) => c.path)).toEqual(['/api/users/change-password'])
    expect(auth.accessToken).toBe('access-1')
  })

  it('signs out locally when the refresh token is refused', async () => {
    const auth = signedIn()
    installFetch(() => json({ code: 'unauthorized', message: 'revoked' }, 401))
    await expect(useChatsStore().reloadChats()).rejects.toMatchObject({ status: 401 })
    expect(auth.signedIn).toBe(false)
  })
})
