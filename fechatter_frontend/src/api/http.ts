/** One small fetch wrapper: the API envelope, the bearer token, and one refresh-and-retry on 401. */

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public field?: string,
  ) {
    super(message)
  }

  /** Worth sending again later: the network, a rate limit or a server that is (re)starting. */
  get retriable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500
  }
}

export interface Envelope<T> {
  data: T
  meta?: Record<string, unknown>
}

interface AuthHooks {
  token(): string | null
  refresh(): Promise<boolean>
}

let hooks: AuthHooks = { token: () => null, refresh: async () => false }

export function setAuthHooks(next: AuthHooks): void {
  hooks = next
}

export function authHeader(): Record<string, string> {
  const token = hooks.token()
  return token ? { Authorization: `Bearer ${token}` } : {}
}

export async function parseResponse<T>(status: number, text: string): Promise<Envelope<T>> {
  let body: unknown = null
  try {
    body = text ? JSON.parse(text) : null
  } catch {
    body = null
  }
  const env = body as { success?: boolean; data?: T; meta?: Record<string, unknown>; error?: { code: string; message: string; field?: string } } | null
  if (status >= 200 && status < 300 && env && env.success !== false) {
    return { data: env.data as T, meta: env.meta }
  }
  const err = env?.error
  throw new ApiError(status, err?.code ?? (status === 404 ? 'not_found' : 'http_error'), err?.message ?? `Request failed (${status})`, err?.field)
}

function errorCode(text: string): string | undefined {
  try {
    return (JSON.parse(text) as { error?: { code?: string } } | null)?.error?.code
  } catch {
    return undefined
  }
}

export interface RequestOptions {
  auth?: boolean
  headers?: Record<string, string>
  query?: Record<string, string | number | undefined | null>
}

export async function request<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<Envelope<T>> {
  const auth = opts.auth ?? true
  let url = path
  if (opts.query) {
    const params = new URLSearchParams()
    for (const [k, v] of Object.entries(opts.query)) if (v !== undefined && v !== null && v !== '') params.set(k, String(v))
    const qs = params.toString()
    if (qs) url += `?${qs}`
  }
  const send = async (): Promise<Response> => {
    const headers: Record<string, string> = { Accept: 'application/json', ...(opts.headers ?? {}) }
    if (body !== undefined) headers['Content-Type'] = 'application/json'
    if (auth) Object.assign(headers, authHeader())
    try {
      return await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
    } catch (e) {
      throw new ApiError(0, 'network_error', e instanceof Error ? e.message : 'Network error')
    }
  }
  let response = await send()
  if (response.status === 401 && auth) {
    // Only an expired or revoked access token is worth a refresh: a refused password (invalid_credentials)
    // would be refused again, at the cost of a token rotation.
    const text = await response.text()
    if (errorCode(text) !== 'unauthorized' || !(await hooks.refresh())) return parseResponse<T>(response.status, text)
    response = await send()
  }
  return parseResponse<T>(response.status, await response.text())
}

export const api = {
  get: <T>(path: string, query?: RequestOptions['query']) => request<T>('GET', path, undefined, { query }),
  post: <T>(path: string, body: unknown = {}, opts?: RequestOptions) => request<T>('POST', path, body, opts),
  patch: <T>(path: string, body: unknown) => request<T>('PATCH', path, body),
  del: <T>(path: string, body?: unknown) => request<T>('DELETE', path, body),
}

/** Upload one file as multipart field `file`, reporting progress (0..1). XHR because fetch has no upload progress. */
export function uploadFile<T>(file: File, onProgress: (fraction: number) => void): Promise<T> {
  const attempt = (): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest()
      xhr.open('POST', '/api/files')
      for (const [k, v] of Object.entries(authHeader())) xhr.setRequestHeader(k, v)
      xhr.upload.onprogress = (e) => {
        if (e.lengthComputable) onProgress(e.loaded / e.total)
      }
      xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText })
      xhr.onerror = () => reject(new ApiError(0, 'network_error', 'Upload failed: network error'))
      const form = new FormData()
      form.append('file', file)
      xhr.send(form)
    })
  return (async () => {
    let res = await attempt()
    if (res.status === 401 && (await hooks.refresh())) res = await attempt()
    return (await parseResponse<T>(res.status, res.text)).data
  })()
}

export function newIdempotencyKey(): string {
  if (typeof crypto !== 'undefined' && 'randomUUID' in crypto) return crypto.randomUUID()
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16)
  })
}
