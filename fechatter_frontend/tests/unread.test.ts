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
  ]

  it('finds the first of the last unread messages of others, deleted ones not counted', () => {
    expect(firstUnreadSeq(items, 1, ME)).toBe(5)
    expect(firstUnreadSeq(items, 2, ME)).toBe(3)
  })

  it('gives nothing when nothing is unread or the log does not reach back that far', () => {
    expect(firstUnreadSeq(items, 0, ME)).toBeNull()
    expect(firstUnreadSeq(items, 4, ME)).toBeNull()
  })
})
