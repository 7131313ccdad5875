/** The search query string of API.md ("Search"): words plus `from:`, `in:`, `before:`, `after:`, `has:file`. */

export interface SearchFilters {
  text: string
  from: number | null
  in: number | null
  /** YYYY-MM-DD (the day itself excluded, as the server reads it) */
  before: string
  after: string
  hasFile: boolean
}

export function emptyFilters(): SearchFilters {
  return { text: '', from: null, in: null, before: '', after: '', hasFile: false }
}

const DATE = /^\d{4}-\d{2}-\d{2}$/

/** Split a typed query into its words and the filters the controls show; unknown tokens stay words. */
export function parseQuery(q: string): SearchFilters {
  const out = emptyFilters()
  const words: string[] = []
  for (const token of q.trim().split(/\s+/).filter(Boolean)) {
    const m = /^(from|in|before|after|has):(.+)$/i.exec(token)
    const key = m?.[1].toLowerCase()
    const value = m?.[2] ?? ''
    if ((key === 'from' || key === 'in') && /^\d+$/.test(value) && out[key] === null) out[key] = Number(value)
    else if ((key === 'before' || key === 'after') && DATE.test(value) && !out[key]) out[key] = value
    else if (key === 'has' && value.toLowerCase() === 'file') out.hasFile = true
    else words.push(token)
  }
  out.text = words.join(' ')
  return out
}

/** The query string for `GET /api/search/messages?q=`: the words, then one token per filter set. */
export function composeQuery(f: SearchFilters): string {
  const parts: string[] = []
  const text = f.text.trim()
  if (text) parts.push(text)
  if (f.from !== null) parts.push(`from:${f.from}`)
  if (f.in !== null) parts.push(`in:${f.in}`)
  if (DATE.test(f.after)) parts.push(`after:${f.after}`)
  if (DATE.test(f.before)) parts.push(`before:${f.before}`)
  if (f.hasFile) parts.push('has:file')
  return parts.join(' ')
}
