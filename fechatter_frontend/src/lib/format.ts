/** Text helpers: mention tokens, day separators, times. */

export type Segment = { kind: 'text'; text: string } | { kind: 'mention'; userId: number; text: string }

const MENTION = /<@(\d+)>/g

/** Split message content into plain text and `<@id>` mention tokens, named by `nameOf`. */
export function segments(content: string, nameOf: (id: number) => string): Segment[] {
  const out: Segment[] = []
  let last = 0
  for (const match of content.matchAll(MENTION)) {
    const at = match.index ?? 0
    if (at > last) out.push({ kind: 'text', text: content.slice(last, at) })
    const userId = Number(match[1])
    out.push({ kind: 'mention', userId, text: `@${nameOf(userId)}` })
    last = at + match[0].length
  }
  if (last < content.length) out.push({ kind: 'text', text: content.slice(last) })
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
