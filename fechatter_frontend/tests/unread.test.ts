import { describe, expect, it } from 'vitest'
import { firstUnreadSeq } from '../src/lib/unread'
import { message } from './fakes'

const ME = 1
const OTHER = 2

describe('firstUnreadSeq', () => {
  const items = [
    message(1, 1, { sender_id: OTHER }),
    message(1, 2, { sender_id: ME }),
    message(1, 3, { sender_id: OTHER }),
    message(1, 4, { sender_id: OTHER, deleted: true, content: '' }),
    message(1, 5, { sender_id: OTHER }),
    message(1, 6, { sender_id: OTHER }),
  ]

  it('finds the first of the last unread messages of others, deleted ones not counted', () => {
    expect(firstUnreadSeq(items, 1, ME)).toBe(6)
    expect(firstUnreadSeq(items, 3, ME)).toBe(3)
  })

  it('leaves out what arrived after the count was taken', () => {
    expect(firstUnreadSeq(items, 1, ME, 5)).toBe(5)
    expect(firstUnreadSeq(items, 2, ME, 5)).toBe(3)
  })

  it('never goes above a message of ones own, whatever a stale count says', () => {
    expect(firstUnreadSeq(items, 9, ME)).toBe(3)
    expect(firstUnreadSeq([...items, message(1, 7, { sender_id: ME })], 2, ME)).toBeNull()
  })

  it('gives nothing when nothing is unread or the log does not reach back that far', () => {
    const others = items.filter((m) => m.sender_id === OTHER)
    expect(firstUnreadSeq(items, 0, ME)).toBeNull()
    expect(firstUnreadSeq(others, 9, ME)).toBeNull()
    // Unless the log holds the whole chat: then the count was stale.
    expect(firstUnreadSeq(others, 9, ME, Number.POSITIVE_INFINITY, true)).toBe(1)
  })
})
