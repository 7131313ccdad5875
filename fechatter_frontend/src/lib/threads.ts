import type { Message } from '../api/types'

/*
 * Threads are worked out from the chat's log as the client holds it. The log runs without a hole from the
 * oldest page loaded to the newest message (the messages store fills every gap), and a reply is always
 * newer than what it answers: so when a message is in the log, every reply to it is there too, and these
 * counts are exact without asking the server.
 */

/** Message id -> how many replies (deleted ones not counted) it has among `items`. */
export function replyCounts(items: readonly Message[]): Map<number, number> {
  const counts = new Map<number, number>()
  for (const m of items) {
    if (m.reply_to === null || m.deleted) continue
    counts.set(m.reply_to, (counts.get(m.reply_to) ?? 0) + 1)
  }
  return counts
}

/** The replies to one message, oldest first; deleted ones stay, shown as such, so the thread keeps its shape. */
export function threadReplies(items: readonly Message[], parentId: number): Message[] {
  return items.filter((m) => m.reply_to === parentId)
}

export function repliesLabel(count: number): string {
  return count === 1 ? '1 reply' : `${count} replies`
}
