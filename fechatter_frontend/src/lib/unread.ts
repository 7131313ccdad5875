import type { Message } from '../api/types'

/**
 * The seq of the first message that was unread when a chat was opened, from its unread count: a member's
 * unread messages are the messages of others after their read position that are not deleted (API.md), and
 * a message of one's own moves that position past it, so they are the last `unread` such messages of the
 * log. Null when nothing was unread, or when the log does not reach back far enough to hold them all.
 */
export function firstUnreadSeq(items: readonly Message[], unread: number, me: number | undefined): number | null {
  if (unread <= 0) return null
  let left = unread
  for (let i = items.length - 1; i >= 0; i--) {
    const m = items[i]
    if (m.deleted || m.sender_id === me) continue
    left -= 1
    if (left === 0) return m.seq
  }
  return null
}
