import { defineStore } from 'pinia'
import type { Message, Pin, PresenceStatus, ReactionEvent, UnpinEvent } from '../api/types'
import { SseClient, type EventSourceFactory, type EventType } from '../realtime/sse'
import { notify } from '../lib/notify'
import { segments } from '../lib/format'
import { useAuthStore } from './auth'
import { useChatsStore } from './chats'
import { useMessagesStore, wakeRetries } from './messages'
import { usePinsStore } from './pins'
import { usePresenceStore } from './presence'

let client: SseClient | null = null
/** Events are applied one after another, in stream order, even when applying one waits on the network. */
let queue: Promise<void> = Promise.resolve()

/** Whether the person is looking at this chat right now (so a new message there is read, not unread). */
export function chatVisible(chatId: number): boolean {
  const chats = useChatsStore()
  const shown = typeof document === 'undefined' || document.visibilityState === 'visible'
  return chats.activeChatId === chatId && shown
}

// Older than this, a message replayed after a reconnect is news no more: the unread counts tell of it.
const NOTIFY_WITHIN_MS = 10 * 60_000

/** A direct message or a mention of the person, in a chat they are not looking at: a desktop notification. */
function notifyIfAsked(m: Message, fresh: boolean): void {
  const chats = useChatsStore()
  const me = useAuthStore().user?.id
  const chat = chats.byId(m.chat_id)
  if (!fresh || me === undefined || !chat || m.sender_id === me || m.deleted || chatVisible(m.chat_id)) return
  if (Date.now() - Date.parse(m.created_at) > NOTIFY_WITHIN_MS) return
  const mentioned = (m.mentions ?? []).includes(me)
  if (chat.chat_type !== 'Single' && !mentioned) return
  const sender = chats.userName(m.sender_id)
  const title = chat.chat_type === 'Single' ? sender : `${sender} in ${chats.displayName(chat)}`
  const text = segments(m.content, (id) => chats.userName(id)).map((p) => p.text).join('') || 'sent a file'
  notify(me, m.chat_id, title, text)
}

export const useRealtimeStore = defineStore('realtime', {
  state: () => ({
    status: 'closed' as 'connecting' | 'open' | 'closed',
  }),
  actions: {
    start(create?: EventSourceFactory) {
      this.stop()
      const auth = useAuthStore()
      client = new SseClient({
        token: () => auth.accessToken,
        create,
        onStatus: (s) => {
          const was = this.status
          this.status = s
          if (s === 'open' && was !== 'open') {
            wakeRetries()
            // Presence changes are not replayed on resume: ask for the current state.
            void usePresenceStore().load()
          }
        },
        onEvent: (type, data) => {
          queue = queue.then(() => this.dispatch(type, data)).catch(() => {})
        },
      })
      client.start()
    },
    stop() {
      client?.stop()
      client = null
      this.status = 'closed'
    },
    offline() {
      client?.suspend()
    },
    /** The network came back: open a fresh stream at once rather than wait for the browser's retry. */
    online() {
      if (client && !client.connected) client.reconnect()
      wakeRetries()
    },
    lastEventId(): string | null {
      return client?.lastEventId ?? null
    },
    async dispatch(type: EventType, data: unknown) {
      const chats = useChatsStore()
      const messages = useMessagesStore()
      switch (type) {
        case 'new_message': {
          const m = data as Message
          // New to this client: not already counted (by the chat list's reload, or a replay after resume).
          const known = chats.byId(m.chat_id)
          const fresh = known !== undefined && m.seq > known.last_seq
          chats.noteMessage(m, chatVisible(m.chat_id))
          await messages.receive(m)
          notifyIfAsked(m, fresh)
          if (chatVisible(m.chat_id) && m.sender_id !== useAuthStore().user?.id) void chats.markRead(m.chat_id, m.seq).catch(() => {})
          break
        }
        case 'message_updated':
        case 'message_deleted': {
          const m = data as Message
          await messages.changed(m)
          const chat = chats.byId(m.chat_id)
          if (chat?.last_message?.seq === m.seq) chat.last_message = m
          // A deleted message no longer counts as unread (nor its mention); only the server knows whether
          // it lay after our read position.
          if (type === 'message_deleted' && chat && chat.unread_count > 0 && m.sender_id !== useAuthStore().user?.id) {
            await chats.refreshChat(m.chat_id).catch(() => {})
          }
          usePinsStore().messageChanged(m)
          break
        }
        case 'message_pinned': {
          usePinsStore().added(data as Pin)
          break
        }
        case 'message_unpinned': {
          usePinsStore().removed(data as UnpinEvent)
          break
        }
        case 'reaction_added':
        case 'reaction_removed': {
          messages.applyReaction(data as ReactionEvent, type === 'reaction_added')
          break
        }
        case 'user_presence': {
          const d = data as { user_id: number; status: PresenceStatus }
          usePresenceStore().set(d.user_id, d.status)
          break
        }
        case 'chat_updated':
        case 'chat_member_updated': {
          // A rename, an archive or a new admin: what the chat list shows and what the caller may do.
          await chats.reloadChats()
          break
        }
        case 'message_read': {
          const d = data as { chat_id: number; user_id: number }
          chats.setRead(d.user_id)
          break
        }
        case 'chat_created':
        case 'chat_member_added':
        case 'chat_member_removed': {
          const me = useAuthStore().user?.id
          const d = data as { chat_id?: number; user_id?: number }
          if (type === 'chat_member_removed' && d.user_id === me && d.chat_id !== undefined) {
            chats.chats = chats.chats.filter((c) => c.id !== d.chat_id)
          } else {
            await chats.reloadChats()
            // Someone new to the workspace, or someone who may have left it: names and the people list.
            if (type !== 'chat_created') chats.refreshPeopleSoon()
          }
          break
        }
        case 'workspace_member_removed': {
          const d = data as { user_id?: number; removed_by?: number | null }
          if (d.user_id === useAuthStore().user?.id) useAuthStore().leftWorkspace(d.removed_by ?? null)
          break
        }
        case 'typing_started':
        case 'typing_stopped': {
          const d = data as { chat_id: number; user_id: number }
          chats.setTyping(d.chat_id, d.user_id, type === 'typing_started')
          break
        }
        case 'resync_required': {
          await chats.load()
          await usePresenceStore().load()
          for (const id of Object.keys(messages.logs)) await messages.reload(Number(id))
          const pins = usePinsStore()
          for (const id of Object.keys(pins.byChat)) await pins.load(Number(id)).catch(() => {})
          break
        }
        default:
          break
      }
    },
  },
})
