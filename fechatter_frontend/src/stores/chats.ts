import { defineStore } from 'pinia'
import { api } from '../api/http'
import type { Chat, ChatMember, ChatType, FormerMember, Invite, Message, UnreadMention, User } from '../api/types'
import { useAuthStore } from './auth'

const PEOPLE_RELOAD_DELAY_MS = 300
let peopleTimer: ReturnType<typeof setTimeout> | null = null

export const useChatsStore = defineStore('chats', {
  state: () => ({
    chats: [] as Chat[],
    users: {} as Record<number, User>,
    /** People who left the workspace, by id: their messages keep a name. */
    former: {} as Record<number, FormerMember>,
    channels: [] as Chat[],
    activeChatId: null as number | null,
    loaded: false,
    /** chat id -> user id -> expiry time (ms) of a typing indicator */
    typing: {} as Record<number, Record<number, number>>,
  }),
  getters: {
    byId: (s) => (id: number) => s.chats.find((c) => c.id === id),
    sorted: (s) =>
      [...s.chats].sort((a, b) => {
        const ta = a.last_message?.created_at ?? a.created_at
        const tb = b.last_message?.created_at ?? b.created_at
        return tb.localeCompare(ta)
      }),
  },
  actions: {
    userName(id: number): string {
      const user = this.users[id]
      if (user) return user.fullname
      const former = this.former[id]
      return former ? `${former.fullname} (left)` : `User ${id}`
    },
    /** The other person of a direct message (yourself for a note-to-self), or null for other chats. */
    otherMember(chat: Chat): number | null {
      if (chat.chat_type !== 'Single') return null
      const me = useAuthStore().user?.id
      return chat.member_ids.find((id) => id !== me) ?? me ?? null
    },
    /** What a person calls a chat: the other person's name for a direct message. */
    displayName(chat: Chat): string {
      if (chat.chat_type === 'Single') {
        const me = useAuthStore().user?.id
        const other = chat.member_ids.find((id) => id !== me)
        if (other !== undefined && this.users[other]) return this.users[other].fullname
      }
      return chat.name
    },
    async load() {
      const [chats] = await Promise.all([api.get<Chat[]>('/api/workspace/chats'), this.loadUsers()])
      this.chats = chats.data
      this.loaded = true
    },
    async reloadChats() {
      this.chats = (await api.get<Chat[]>('/api/workspace/chats')).data
    },
    /** The workspace's members, and the names of those who have left it. */
    async loadUsers() {
      // Former members only name old messages: without them the members still load.
      const [users, former] = await Promise.all([
        api.get<User[]>('/api/users'),
        api.get<FormerMember[]>('/api/workspace/former-members').catch(() => null),
      ])
      this.users = Object.fromEntries(users.data.map((u) => [u.id, u]))
      if (former) this.former = Object.fromEntries(former.data.map((f) => [f.id, f]))
    },
    /**
     * Reload the people soon, once for a burst of membership events (a removal from the workspace comes as
     * one event per chat the person was in).
     */
    refreshPeopleSoon() {
      if (peopleTimer !== null) return
      peopleTimer = setTimeout(() => {
        peopleTimer = null
        void this.loadUsers().catch(() => {})
      }, PEOPLE_RELOAD_DELAY_MS)
    },
    /** Take someone out of the workspace (owner or admin); they leave its chats but direct messages. */
    async removeFromWorkspace(userId: number) {
      await api.del(`/api/workspace/members/${userId}`)
      await Promise.all([this.loadUsers(), this.reloadChats()])
    },
    async loadChannels() {
      this.channels = (await api.get<Chat[]>('/api/workspace/channels')).data
    },
    upsert(chat: Chat) {
      const i = this.chats.findIndex((c) => c.id === chat.id)
      if (i >= 0) this.chats[i] = chat
      else this.chats.push(chat)
    },
    /** Fetch one chat again (its counts changed in a way only the server can tell). */
    async refreshChat(id: number) {
      const { data } = await api.get<Chat>(`/api/chat/${id}`)
      this.upsert(data)
    },
    async ensureChat(id: number): Promise<Chat | undefined> {
      const known = this.byId(id)
      if (known) return known
      const { data } = await api.get<Chat>(`/api/chat/${id}`)
      return data
    },
    async create(name: string, chatType: ChatType, members: number[], description?: string): Promise<Chat> {
      const body: Record<string, unknown> = { name, chat_type: chatType, members }
      if (description) body.description = description
      const { data } = await api.post<Chat>('/api/workspace/chats', body)
      this.upsert(data)
      return data
    },
    async join(id: number): Promise<Chat> {
      const { data } = await api.post<Chat>(`/api/chat/${id}/join`)
      this.upsert(data)
      return data
    },
    async leave(id: number) {
      await api.post(`/api/chat/${id}/leave`)
      this.chats = this.chats.filter((c) => c.id !== id)
    },
    async members(id: number): Promise<ChatMember[]> {
      return (await api.get<ChatMember[]>(`/api/chat/${id}/members`)).data
    },
    /** Rename or describe a chat (its owner or an admin). */
    async update(id: number, changes: { name?: string; description?: string }): Promise<Chat> {
      const { data } = await api.patch<Chat>(`/api/chat/${id}`, changes)
      this.upsert(data)
      return data
    },
    async addMembers(id: number, userIds: number[]): Promise<Chat> {
      const { data } = await api.post<Chat>(`/api/chat/${id}/members`, { user_ids: userIds })
      this.upsert(data)
      return data
    },
    /** Make someone of the workspace an admin or a plain member (its owner only). */
    async setWorkspaceRole(userId: number, role: 'admin' | 'member') {
      const { data } = await api.patch<User>(`/api/workspace/members/${userId}`, { role })
      this.users[userId] = data
    },
    /** Make a member of a chat its admin or a plain member again (the chat's owner only). */
    async setChatRole(id: number, userId: number, role: 'admin' | 'member'): Promise<ChatMember> {
      return (await api.patch<ChatMember>(`/api/chat/${id}/members/${userId}`, { role })).data
    },
    async removeMember(id: number, userId: number) {
      await api.del(`/api/chat/${id}/members/${userId}`)
      const chat = this.byId(id)
      if (chat) chat.member_ids = chat.member_ids.filter((m) => m !== userId)
    },
    async setArchived(id: number, archived: boolean): Promise<Chat> {
      const { data } = await api.post<Chat>(`/api/chat/${id}/${archived ? 'archive' : 'unarchive'}`)
      this.upsert(data)
      return data
    },
    /** Messages that mention the caller after their read position, newest first. */
    async unreadMentions(): Promise<UnreadMention[]> {
      return (await api.get<UnreadMention[]>('/api/mentions/unread')).data
    },
    async createInvite(): Promise<Invite> {
      return (await api.post<Invite>('/api/workspace/invites', {})).data
    },
    /** The invites that have not expired (owner or admin). */
    async invites(): Promise<Invite[]> {
      return (await api.get<Invite[]>('/api/workspace/invites')).data
    },
    async revokeInvite(code: string) {
      await api.del(`/api/workspace/invites/${encodeURIComponent(code)}`)
    },
    /** A message arrived (live or by our own send): move the chat up and count it unread when it is not open. */
    noteMessage(message: Message, visible: boolean) {
      const chat = this.byId(message.chat_id)
      if (!chat) {
        void this.reloadChats()
        return
      }
      if (message.seq <= chat.last_seq) {
        if (chat.last_message?.seq === message.seq) chat.last_message = message
        return
      }
      chat.last_seq = message.seq
      chat.last_message = message
      const me = useAuthStore().user?.id
      if (message.sender_id === me) {
        // Sent by us (here or on another device): the server moved our read position to it, so nothing
        // before it is unread any more, mentions included.
        chat.unread_count = 0
        chat.unread_mentions = 0
      } else if (!visible) {
        chat.unread_count += 1
        if (me !== undefined && message.mentions?.includes(me)) chat.unread_mentions = (chat.unread_mentions ?? 0) + 1
      }
      this.clearTyping(message.chat_id, message.sender_id)
    },
    async markRead(chatId: number, seq: number) {
      const chat = this.byId(chatId)
      if (chat) chat.unread_count = 0
      // Read to the end: no mention is left unread there.
      if (chat && seq >= chat.last_seq) chat.unread_mentions = 0
      const { data } = await api.post<{ chat_id: number; last_read_seq: number; unread_count: number }>(`/api/chat/${chatId}/read`, { seq })
      const now = this.byId(chatId)
      if (now) {
        now.unread_count = data.unread_count
        if (data.unread_count === 0) now.unread_mentions = 0
        // Read part of the way: only the server knows which mentions lie before the new position.
        else if ((now.unread_mentions ?? 0) > 0) await this.reloadChats()
      }
    },
    setRead(userId: number) {
      // Our own read position moved on another device.
      if (userId === useAuthStore().user?.id) {
        void api.get<{ chat_id: number; unread_count: number }[]>('/api/unread-counts').then(({ data }) => {
          for (const row of data) {
            const c = this.byId(row.chat_id)
            if (!c) continue
            c.unread_count = row.unread_count
            // A mention is a message of someone else's after the read position: none unread, none left.
            if (row.unread_count === 0) c.unread_mentions = 0
          }
        })
      }
    },
    setTyping(chatId: number, userId: number, on: boolean) {
      if (userId === useAuthStore().user?.id) return
      const now = { ...(this.typing[chatId] ?? {}) }
      if (on) now[userId] = Date.now() + 7_000
      else delete now[userId]
      this.typing = { ...this.typing, [chatId]: now }
    },
    clearTyping(chatId: number, userId: number) {
      if (this.typing[chatId]?.[userId]) this.setTyping(chatId, userId, false)
    },
    typingNames(chatId: number, now: number): string[] {
      return Object.entries(this.typing[chatId] ?? {})
        .filter(([, until]) => until > now)
        .map(([id]) => this.userName(Number(id)))
    },
    reset() {
      this.$reset()
    },
  },
})
