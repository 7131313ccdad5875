import { defineStore } from 'pinia'
import { api } from '../api/http'
import type { Message, Pin, UnpinEvent } from '../api/types'

/** Newest pin first, one entry per message, as `GET /api/chat/{id}/pins` answers. */
function ordered(pins: Pin[]): Pin[] {
  return [...pins].sort((a, b) => b.pinned_at.localeCompare(a.pinned_at) || b.message.id - a.message.id)
}

/** Live changes that arrive while a chat's pins are being fetched, applied again on the fetched list (which
 * may predate them). Each change is idempotent. */
const arrivedWhileLoading = new Map<number, Array<(pins: Pin[]) => Pin[]>>()

/**
 * Pinned messages per chat. A chat's pins are fetched when it is opened; afterwards the live stream keeps
 * them current (`message_pinned`, `message_unpinned`, and edits of a pinned message).
 */
export const usePinsStore = defineStore('pins', {
  state: () => ({
    byChat: {} as Record<number, Pin[]>,
  }),
  getters: {
    of: (s) => (chatId: number): Pin[] => s.byChat[chatId] ?? [],
    isPinned: (s) => (chatId: number, messageId: number): boolean => (s.byChat[chatId] ?? []).some((p) => p.message.id === messageId),
  },
  actions: {
    async load(chatId: number) {
      const changes: Array<(pins: Pin[]) => Pin[]> = []
      arrivedWhileLoading.set(chatId, changes)
      try {
        const { data } = await api.get<Pin[]>(`/api/chat/${chatId}/pins`)
        this.byChat[chatId] = changes.reduce((pins, change) => change(pins), ordered(data))
      } finally {
        if (arrivedWhileLoading.get(chatId) === changes) arrivedWhileLoading.delete(chatId)
      }
    },
    /** Pin or unpin; the server's answer (and the event that follows it) settle the list. */
    async toggle(chatId: number, messageId: number) {
      const path = `/api/chat/${chatId}/messages/${messageId}/pin`
      if (this.isPinned(chatId, messageId)) {
        await api.del(path)
        this.removed({ chat_id: chatId, message_id: messageId, unpinned_by: 0 })
      } else {
        const { data } = await api.post<Pin>(path)
        this.added(data)
      }
    },
    /** Apply a change to a chat's list. Only chats whose pins were fetched are kept: a partial list would
     * pass for the whole one. */
    change(chatId: number, change: (pins: Pin[]) => Pin[]) {
      arrivedWhileLoading.get(chatId)?.push(change)
      const pins = this.byChat[chatId]
      if (pins) this.byChat[chatId] = change(pins)
    },
    added(pin: Pin) {
      this.change(pin.chat_id, (pins) => ordered([...pins.filter((p) => p.message.id !== pin.message.id), pin]))
    },
    removed(event: UnpinEvent) {
      this.change(event.chat_id, (pins) => pins.filter((p) => p.message.id !== event.message_id))
    },
    /** An edit of a pinned message shows in the pinned list too. */
    messageChanged(message: Message) {
      this.change(message.chat_id, (pins) => pins.map((p) => (p.message.id === message.id ? { ...p, message } : p)))
    },
  },
})
