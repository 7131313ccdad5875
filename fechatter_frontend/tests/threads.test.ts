import { describe, expect, it } from 'vitest'
import { repliesLabel, replyCounts, threadReplies } from '../src/lib/threads'
import { message } from './fakes'

describe('threads', () => {
  const parent = message(1, 1)
  const other = message(1, 2)
  const first = message(1, 3, { reply_to: parent.id })
  const toOther = message(1, 4, { reply_to: other.id })
  const gone = message(1, 5, { reply_to: parent.id, deleted: true, content: '' })
  const second = message(1, 6, { reply_to: parent.id })
  const items = [parent, other, first, toOther, gone, second]

  it('counts the replies of each message, deleted ones not', () => {
    const counts = replyCounts(items)
    expect(counts.get(parent.id)).toBe(2)
    expect(counts.get(other.id)).toBe(1)
    expect(counts.has(first.id)).toBe(false)
  })

  it('lists the replies of one message in order, deleted ones included', () => {
    expect(threadReplies(items, parent.id).map((m) => m.seq)).toEqual([3, 5, 6])
    expect(threadReplies(items, first.id)).toEqual([])
  })

  it('names the count', () => {
    expect(repliesLabel(1)).toBe('1 reply')
    expect(repliesLabel(2)).toBe('2 replies')
  })
})
