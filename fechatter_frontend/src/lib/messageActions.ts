import type { Ref } from 'vue'
import type { Message } from '../api/types'
import { useMessagesStore } from '../stores/messages'
import { usePinsStore } from '../stores/pins'

/** What one can do to a message of a chat, for a view that shows a failure in its own banner (`error`). */
export function useMessageActions(chatId: () => number, error: Ref<string>) {
  const messages = useMessagesStore()
  const pins = usePinsStore()
  async function attempt(action: () => Promise<unknown>, fallback: string) {
    error.value = ''
    try {
      await action()
    } catch (e) {
      error.value = e instanceof Error ? e.message : fallback
    }
  }
  return {
    attempt,
    edit: (m: Message, content: string) => attempt(() => messages.edit(chatId(), m.id, content), 'Could not edit'),
    remove: (m: Message) => attempt(() => messages.remove(chatId(), m.id), 'Could not delete'),
    react: (m: Message, emoji: string) => attempt(() => messages.toggleReaction(chatId(), m.id, emoji), 'Could not react'),
    togglePin: (m: Message) => attempt(() => pins.toggle(chatId(), m.id), 'Could not pin'),
  }
}
