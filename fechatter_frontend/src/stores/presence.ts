import { defineStore } from 'pinia'
import { api, ApiError } from '../api/http'
import type { Presence, PresenceStatus } from '../api/types'

/** After this long without input the person shows as away (and online again on the next input). */
export const AWAY_AFTER_MS = 5 * 60_000

export function presenceLabel(status: PresenceStatus): string {
  return status === 'online' ? 'Online' : status === 'away' ? 'Away' : 'Offline'
}

export const usePresenceStore = defineStore('presence', {
  state: () => ({
    status: {} as Record<number, PresenceStatus>,
    /** false when the server has no presence routes: then no dots are shown rather than everyone offline */
    available: true,
    mine: 'online' as 'online' | 'away',
    lastActivity: Date.now(),
  }),
  getters: {
    of: (s) => (userId: number): PresenceStatus => s.status[userId] ?? 'offline',
  },
  actions: {
    /** Everyone's presence in the workspace (on start and whenever the stream (re)opens: events may have been missed). */
    async load() {
      try {
        const { data } = await api.get<Presence[]>('/api/presence')
        this.status = Object.fromEntries(data.map((p) => [p.user_id, p.status]))
        this.available = true
      } catch (e) {
        if (e instanceof ApiError && (e.status === 404 || e.status === 405)) this.available = false
      }
    },
    /** `user_presence` from the live stream. */
    set(userId: number, status: PresenceStatus) {
      this.status = { ...this.status, [userId]: status }
    },
    /** Input from the person: back to online if we had marked them away. */
    async noteActivity(now: number = Date.now()) {
      this.lastActivity = now
      if (this.mine === 'away') await this.announce('online')
    },
    /** Called now and then: mark the person away once they have been idle long enough. */
    async checkIdle(now: number = Date.now()) {
      if (this.mine === 'online' && now - this.lastActivity >= AWAY_AFTER_MS) await this.announce('away')
    },
    async announce(status: 'online' | 'away') {
      this.mine = status
      if (!this.available) return
      try {
        const { data } = await api.post<Presence>('/api/presence', { status })
        this.set(data.user_id, data.status)
      } catch {
        // Presence is a courtesy: the next change tries again.
      }
    },
    reset() {
      this.$reset()
    },
  },
})
