import type { Message } from '../api/types'

/**
 * The seq of the first message that was unread when a chat was opened, from its unread count: a member's
 * unread messages are the messages of others after their read position that are not deleted (API.md), so
 * they are the last `unread` such messages up to `upTo` (the chat's newest seq when the count was taken;
 * later ones arrived while the reader looked). A message of one's own moved the read position past it, so
 * nothing before it counts, however large a count that has grown stale says. Null when nothing was unread,
 * or when the log does not reach back far enough to tell (`whole`: it holds the chat from its start).
 */
export function firstUnreadSeq(
  items: readonly Message[],
  unread: number,
  me: number | undefined,
  upTo = Number.POSITIVE_INFINITY,
  whole = false,
): number | null {
  if (unread <= 0) return null
  let left = unread
  let earliest: number | null = null
  for (let i = items.length - 1; i >= 0; i--) {
    const m = items[i]
    if (m.seq > upTo) continue
    if (m.sender_id === me) return earliest
    if (m.deleted) continue
    earliest = m.seq
    left -= 1
    if (left === 0) return earliest
  }
  return whole ? earliest : null
}
