import { describe, expect, it } from 'vitest'
import { highlightParts, segments } from '../src/lib/format'

describe('format', () => {
  it('renders <@id> mention tokens as @Full Name', () => {
    const names: Record<number, string> = { 7: 'Ada Lovelace' }
    expect(segments('hi <@7>, see <@9>', (id) => names[id] ?? `User ${id}`)).toEqual([
      { kind: 'text', text: 'hi ' },
      { kind: 'mention', userId: 7, text: '@Ada Lovelace' },
      { kind: 'text', text: ', see ' },
      { kind: 'mention', userId: 9, text: '@User 9' },
    ])
  })

  it('splits an escaped search highlight into text parts without HTML', () => {
    expect(highlightParts('a &lt;b&gt; &amp; <mark>zebra</mark> &quot;x&quot;')).toEqual([
      { text: 'a <b> & ', marked: false },
      { text: 'zebra', marked: true },
      { text: ' "x"', marked: false },
    ])
  })
})
