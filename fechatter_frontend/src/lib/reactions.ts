/** Reactions of one message as pure data: adding and removing are idempotent, so a change seen twice (our
 * own answer, then the live event of the same change) counts once. */
import type { Reaction } from '../api/types'

/** Common emoji offered by the picker. */
export const QUICK_EMOJI = ['👍', '❤️', '😂', '🎉', '😮', '😢', '🙏', '👀'] as const

export function withReaction(reactions: readonly Reaction[], userId: number, emoji: string, add: boolean): Reaction[] {
  const i = reactions.findIndex((r) => r.emoji === emoji)
  if (add) {
    if (i < 0) return [...reactions, { emoji, count: 1, user_ids: [userId] }]
    const r = reactions[i]
    if (r.user_ids.includes(userId)) return [...reactions]
    const next = { emoji, count: r.count + 1, user_ids: [...r.user_ids, userId] }
    return reactions.map((x, j) => (j === i ? next : x))
  }
  if (i < 0 || !reactions[i].user_ids.includes(userId)) return [...reactions]
  const r = reactions[i]
  const left = r.user_ids.filter((u) => u !== userId)
  if (left.length === 0) return reactions.filter((_, j) => j !== i)
  const next = { emoji, count: Math.max(left.length, r.count - 1), user_ids: left }
  return reactions.map((x, j) => (j === i ? next : x))
}

export function reacted(reactions: readonly Reaction[] | undefined, userId: number | undefined, emoji: string): boolean {
  if (userId === undefined) return false
  return (reactions ?? []).some((r) => r.emoji === emoji && r.user_ids.includes(userId))
}

/** The accessible (and visible) name of a reaction button: the emoji and how many gave it. */
export function reactionLabel(r: Reaction): string {
  return `${r.emoji} ${r.count}`
}
