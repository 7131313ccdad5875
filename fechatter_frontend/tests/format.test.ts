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

  it('finds http and https links, without the punctuation that closes the sentence', () => {
    const name = (id: number) => `User ${id}`
    expect(segments('see https://example.com/a?b=1. and (http://x.org/wiki/Foo_(bar)), ok', name)).toEqual([
      { kind: 'text', text: 'see ' },
      { kind: 'link', href: 'https://example.com/a?b=1', text: 'https://example.com/a?b=1' },
      { kind: 'text', text: '. and (' },
      { kind: 'link', href: 'http://x.org/wiki/Foo_(bar)', text: 'http://x.org/wiki/Foo_(bar)' },
      { kind: 'text', text: '), ok' },
    ])
    // Other schemes stay text: nothing runs script from a message.
    expect(segments('javascript:alert(1) data:text/html,x ftp://h/f', name)).toEqual([
      { kind: 'text', text: 'javascript:alert(1) data:text/html,x ftp://h/f' },
    ])
    expect(segments('https:// and http://', name).every((p) => p.kind === 'text')).toBe(true)
    // An invisible direction control ends the address: what shows is what it opens.
    expect(segments('https://good.example/\u202egro.live', name)[0]).toEqual({ kind: 'link', href: 'https://good.example/', text: 'https://good.example/' })
    // Closing brackets without opening ones close the sentence, however many.
    const parts = segments(`https://a.b/x${')'.repeat(20_000)}`, name)
    expect(parts[0]).toEqual({ kind: 'link', href: 'https://a.b/x', text: 'https://a.b/x' })
    expect(segments('<@3> https://a.b/<@4>', name)).toEqual([
      { kind: 'mention', userId: 3, text: '@User 3' },
      { kind: 'text', text: ' ' },
      { kind: 'link', href: 'https://a.b/', text: 'https://a.b/' },
      { kind: 'mention', userId: 4, text: '@User 4' },
    ])
  })

  it('shows `inline code` and fenced blocks as code, with nothing inside them taken for a link', () => {
    const name = (id: number) => `User ${id}`
    expect(segments('run `make test` now', name)).toEqual([
      { kind: 'text', text: 'run ' },
      { kind: 'code', text: 'make test' },
      { kind: 'text', text: ' now' },
    ])
    expect(segments('look:\n```python\nprint("https://x.y")\n```\ndone', name)).toEqual([
      { kind: 'text', text: 'look:\n' },
      { kind: 'codeblock', text: 'print("https://x.y")' },
      { kind: 'text', text: '\ndone' },
    ])
    expect(segments('a lone ` backtick', name)).toEqual([{ kind: 'text', text: 'a lone ` backtick' }])
    expect(segments('empty `` ticks', name)).toEqual([{ kind: 'text', text: 'empty `` ticks' }])
  })

  it('splits an escaped search highlight into text parts without HTML', () => {
    expect(highlightParts('a &lt;b&gt; &amp; <mark>zebra</mark> &quot;x&quot;')).toEqual([
      { text: 'a <b> & ', marked: false },
      { text: 'zebra', marked: true },
      { text: ' "x"', marked: false },
    ])
  })
})
