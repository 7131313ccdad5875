import { defineStore } from 'pinia'
import { api, ApiError, setAuthHooks } from '../api/http'
import type { Session, User, Workspace, WorkspaceMembership } from '../api/types'

const STORAGE_KEY = 'fechatter.session'
/** Refresh this long before the access token expires. */
const REFRESH_MARGIN_MS = 60_000

interface Stored {
  access_token: string
  refresh_token: string
  expires_at: number
  user: User
  workspace: Workspace
}

function storage(): Storage | null {
  try {
    return typeof localStorage === 'undefined' ? null : localStorage
  } catch {
    return null
  }
}

export const useAuthStore = defineStore('auth', {
  state: () => ({
    accessToken: null as string | null,
    refreshToken: null as string | null,
    expiresAt: 0,
    user: null as User | null,
    workspace: null as Workspace | null,
    refreshTimer: null as ReturnType<typeof setTimeout> | null,
    refreshing: null as Promise<boolean> | null,
    /** Why the last session ended, when the person did not end it (shown on the sign-in page). */
    notice: '',
  }),
  getters: {
    signedIn: (s) => s.accessToken !== null,
  },
  actions: {
    /** Wire the HTTP layer to this store and restore a saved session. */
    init() {
      setAuthHooks({ token: () => this.accessToken, refresh: () => this.refresh() })
      const raw = storage()?.getItem(STORAGE_KEY)
      if (raw) {
        try {
          const s = JSON.parse(raw) as Stored
          this.accessToken = s.access_token
          this.refreshToken = s.refresh_token
          this.expiresAt = s.expires_at
          this.user = s.user
          this.workspace = s.workspace
          this.schedule()
        } catch {
          storage()?.removeItem(STORAGE_KEY)
        }
      }
    },
    apply(session: Session) {
      this.notice = '' // a new session: whatever ended the last one is old news
      this.accessToken = session.access_token
      this.refreshToken = session.refresh_token
      this.expiresAt = Date.now() + session.expires_in * 1000
      this.user = session.user
      this.workspace = session.workspace
      const stored: Stored = {
        access_token: session.access_token,
        refresh_token: session.refresh_token,
        expires_at: this.expiresAt,
        user: session.user,
        workspace: session.workspace,
      }
      storage()?.setItem(STORAGE_KEY, JSON.stringify(stored))
      this.schedule()
    },
    schedule() {
      if (this.refreshTimer) clearTimeout(this.refreshTimer)
      const wait = Math.max(5_000, this.expiresAt - Date.now() - REFRESH_MARGIN_MS)
      this.refreshTimer = setTimeout(() => void this.refresh(), wait)
    },
    /** Sign in; with an invite code, into that workspace (joining it unless already a member). */
    async signin(email: string, password: string, inviteCode?: string) {
      const body: Record<string, string> = { email, password }
      if (inviteCode) body.invite_code = inviteCode
      const { data } = await api.post<Session>('/api/signin', body, { auth: false })
      this.apply(data)
    },
    async signup(fields: { email: string; password: string; fullname: string; workspace_name?: string; invite_code?: string }) {
      const body: Record<string, string> = { email: fields.email, password: fields.password, fullname: fields.fullname }
      if (fields.invite_code) body.invite_code = fields.invite_code
      else if (fields.workspace_name) body.workspace_name = fields.workspace_name
      const { data } = await api.post<Session>('/api/signup', body, { auth: false })
      this.apply(data)
    },
    /** Rotate the token pair once, however many callers ask at the same time. */
    refresh(): Promise<boolean> {
      if (!this.refreshToken) return Promise.resolve(false)
      if (this.refreshing) return this.refreshing
      const token = this.refreshToken
      this.refreshing = (async () => {
        try {
          const { data } = await api.post<Session>('/api/refresh', { refresh_token: token }, { auth: false })
          this.apply(data)
          return true
        } catch (e) {
          if (e instanceof ApiError && e.retriable) {
            // Offline or the server restarting: keep the session and try again shortly.
            this.refreshTimer = setTimeout(() => void this.refresh(), 5_000)
            return false
          }
          this.clear()
          return false
        } finally {
          this.refreshing = null
        }
      })()
      return this.refreshing
    },
    async listWorkspaces(): Promise<WorkspaceMembership[]> {
      return (await api.get<WorkspaceMembership[]>('/api/workspaces')).data
    },
    switchWorkspace(id: number): Promise<void> {
      return this.replaceSession(api.post<Session>(`/api/workspaces/${id}/switch`))
    },
    /** Join another workspace with an invite code (or the whole invite link). */
    joinWorkspace(invite: string): Promise<void> {
      const code = invite.trim().replace(/^.*\/invite\//, '')
      return this.replaceSession(api.post<Session>('/api/workspaces/join', { invite_code: code }))
    },
    createWorkspace(name: string): Promise<void> {
      return this.replaceSession(api.post<Session>('/api/workspaces', { name }))
    },
    /** Move to the session of another workspace; the one left behind is revoked, as nothing holds it now. */
    async replaceSession(pending: Promise<{ data: Session }>) {
      const session = (await pending).data
      // A refresh already under way would land after this and bring the old workspace back.
      if (this.refreshing) await this.refreshing.catch(() => false)
      const old = this.refreshToken
      this.apply(session)
      if (old) void api.post('/api/logout', { refresh_token: old }).catch(() => {})
    },
    /** Every other session of the account ends; this one goes on with the new pair of tokens. */
    async changePassword(currentPassword: string, newPassword: string) {
      const { data } = await api.post<Session>('/api/users/change-password', {
        current_password: currentPassword,
        new_password: newPassword,
      })
      this.apply(data)
    },
    /**
     * The person is no longer in this workspace (removed, or they left it from any device): the session is
     * over, and the sign-in page says why. Signing in again lands in another workspace of theirs.
     */
    leftWorkspace(removedBy: number | null) {
      if (!this.accessToken) return // already told: the stream's event and the leave's answer both come
      const name = this.workspace?.name ?? 'the workspace'
      this.notice = removedBy === null ? `You left ${name}.` : `You were removed from ${name}.`
      this.clear()
    },
    /** Leave the current workspace (not its owner): its chats go, the direct messages stay for the others. */
    async leaveWorkspace() {
      const me = this.user?.id
      if (me === undefined) return
      await api.del(`/api/workspace/members/${me}`)
      this.leftWorkspace(null)
    },
    /** End every session of the account, this one included. */
    async logoutEverywhere() {
      await api.post('/api/logout-all')
      this.clear()
    },
    async logout() {
      const token = this.refreshToken
      try {
        if (token) await api.post('/api/logout', { refresh_token: token })
      } catch {
        // Signing out locally is what matters to the person; the server token expires anyway.
      }
      this.clear()
    },
    clear() {
      if (this.refreshTimer) clearTimeout(this.refreshTimer)
      this.refreshTimer = null
      this.accessToken = null
      this.refreshToken = null
      this.user = null
      this.workspace = null
      this.expiresAt = 0
      storage()?.removeItem(STORAGE_KEY)
    },
  },
})
