/** Text helpers: mention tokens, day separators, times. */

/**
 * One piece of a message as shown: plain text, a mention, a link (http and https only), inline code or a
 * code block. Everything is rendered as text nodes and attributes, never as HTML.
 */
export type Segment =
  | { kind: 'text'; text: string }
  | { kind: 'mention'; userId: number; text: string }
  | { kind: 'link'; href: string; text: string }
  | { kind: 'code'; text: string }
  | { kind: 'codeblock'; text: string }

const MENTION = /<@(\d+)>/g
// A fenced block (```…```, over several lines; a language name after the opening fence is dropped) or an
// inline span (`…` on one line).
const CODE = /```(?:[\w+-]*[^\S\n]*\n)?([\s\S]+?)\n?```|`([^`\n]+)`/g
// An address ends at a space, a quote or a bracket of markup, and at an invisible direction control
// (U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), which could make it read as another address.
const URL_START = /\bhttps?:\/\/[^\s<>"'`\u200e\u200f\u202a-\u202e\u2066-\u2069]+/gi
// Punctuation that ends a sentence rather than the address ("see https://example.com.").
const TRAILING = new Set(['.', ',', ';', ':', '!', '?', "'", '"', '*', '_'])
const CLOSING: Record<string, string> = { ')': '(', ']': '[' }

/** The address without what only closes the sentence around it: trailing punctuation, and a closing
 * bracket that has no opening one inside the address (Wikipedia's `_(film)` keeps its own). One pass from
 * the end, with the brackets counted once, so a long run of them costs no more than its length. */
function trimUrl(raw: string): string {
  const count = (c: string) => raw.split(c).length - 1
  const open: Record<string, number> = { '(': count('('), '[': count('[') }
  const close: Record<string, number> = { ')': count(')'), ']': count(']') }
  let end = raw.length
  while (end > 0) {
    const c = raw[end - 1]
    if (TRAILING.has(c)) end--
    else if (c in CLOSING && close[c] > open[CLOSING[c]]) {
      close[c]--
      end--
    } else break
  }
  return raw.slice(0, end)
}

function links(text: string): Segment[] {
  const out: Segment[] = []
  let last = 0
  for (const match of text.matchAll(URL_START)) {
    const at = match.index ?? 0
    const url = trimUrl(match[0])
    if (!/^https?:\/\/[^/?#]/i.test(url)) continue
    if (at > last) out.push({ kind: 'text', text: text.slice(last, at) })
    out.push({ kind: 'link', href: url, text: url })
    last = at + url.length
  }
  if (last < text.length) out.push({ kind: 'text', text: text.slice(last) })
  return out
}

function mentionsAndLinks(content: string, nameOf: (id: number) => string): Segment[] {
  const out: Segment[] = []
  let last = 0
  for (const match of content.matchAll(MENTION)) {
    const at = match.index ?? 0
    if (at > last) out.push(...links(content.slice(last, at)))
    const userId = Number(match[1])
    out.push({ kind: 'mention', userId, text: `@${nameOf(userId)}` })
    last = at + match[0].length
  }
  if (last < content.length) out.push(...links(content.slice(last)))
  return out
}

/** Split message content into what it shows: `<@id>` mention tokens named by `nameOf`, links, code. */
export function segments(content: string, nameOf: (id: number) => string): Segment[] {
  const out: Segment[] = []
  let last = 0
  for (const match of content.matchAll(CODE)) {
    const at = match.index ?? 0
    if (at > last) out.push(...mentionsAndLinks(content.slice(last, at), nameOf))
    if (match[1] !== undefined) out.push({ kind: 'codeblock', text: match[1] })
    else out.push({ kind: 'code', text: match[2] })
    last = at + match[0].length
  }
  if (last < content.length) out.push(...mentionsAndLinks(content.slice(last), nameOf))
  return out
}

export function dayKey(iso: string): string {
  const d = new Date(iso)
  return `${d.getFullYear()}-${d.getMonth() + 1}-${d.getDate()}`
}

export function dayLabel(iso: string, now: Date = new Date()): string {
  const d = new Date(iso)
  const today = dayKey(now.toISOString())
  const yesterday = dayKey(new Date(now.getTime() - 86_400_000).toISOString())
  const key = dayKey(iso)
  if (key === today) return 'Today'
  if (key === yesterday) return 'Yesterday'
  return d.toLocaleDateString(undefined, { weekday: 'long', year: 'numeric', month: 'long', day: 'numeric' })
}

export function timeLabel(iso: string): string {
  return new Date(iso).toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })
}

export function sizeLabel(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'", '&#x27;': "'" }

function unescapeHtml(text: string): string {
  return text.replace(/&(?:amp|lt|gt|quot|#39|#x27);/g, (e) => ENTITIES[e] ?? e)
}

/**
 * Split a search highlight (HTML-escaped text with matches in `<mark>`…`</mark>`) into plain and marked
 * parts, to render as text: nothing from the server is ever inserted as HTML.
 */
export function highlightParts(highlight: string): { text: string; marked: boolean }[] {
  const parts: { text: string; marked: boolean }[] = []
  const re = /<(mark|b|em)>(.*?)<\/\1>/gs
  let last = 0
  for (const m of highlight.matchAll(re)) {
    const at = m.index ?? 0
    if (at > last) parts.push({ text: unescapeHtml(highlight.slice(last, at)), marked: false })
    parts.push({ text: unescapeHtml(m[2]), marked: true })
    last = at + m[0].length
  }
  if (last < highlight.length) parts.push({ text: unescapeHtml(highlight.slice(last)), marked: false })
  return parts
}
