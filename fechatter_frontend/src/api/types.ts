export interface User {
  id: number
  email?: string
  fullname: string
  workspace_id: number
  is_bot: boolean
  created_at: string
  /** Their role in the workspace (`GET /api/users`). */
  role?: 'owner' | 'admin' | 'member'
}

export interface Workspace {
  id: number
  name: string
  owner_id: number
}

/** An invite of the workspace (`GET /api/workspace/invites`, owner or admin). */
export interface Invite {
  code: string
  expires_at: string
  max_uses: number | null
  uses: number
}

/** Someone who left the workspace or was removed (`GET /api/workspace/former-members`): a name for their messages. */
export interface FormerMember {
  id: number
  fullname: string
  left_at: string
  /** Who removed them; null when they left by themselves. */
  removed_by: number | null
}

/** A workspace the person belongs to, as `GET /api/workspaces` lists them, with their role in it. */
export interface WorkspaceMembership extends Workspace {
  role: 'owner' | 'admin' | 'member'
}

export interface Session {
  access_token: string
  refresh_token: string
  token_type: string
  expires_in: number
  user: User
  workspace: Workspace
}

export type ChatType = 'Single' | 'Group' | 'PrivateChannel' | 'PublicChannel'

export interface FileInfo {
  id: number
  filename: string
  size: number
  mime_type: string
  url: string
}

export interface Reaction {
  emoji: string
  count: number
  user_ids: number[]
}

export interface Message {
  id: number
  chat_id: number
  seq: number
  sender_id: number
  content: string
  files: FileInfo[]
  reply_to: number | null
  idempotency_key: string | null
  created_at: string
  edited_at: string | null
  deleted: boolean
  /** Replies not deleted, as the server counted them when it sent this copy (the client counts from its log). */
  reply_count?: number
  /** `{emoji, count, user_ids}` in order of first use (absent from servers that predate reactions). */
  reactions?: Reaction[]
  /** Ids of the members the text mentions (`<@id>`, or everyone for `@everyone` / `@here`), the sender never. */
  mentions?: number[]
}

/** An earlier version of a message (`GET .../messages/{id}/history`, oldest first). */
export interface MessageVersion {
  content: string
  /** When an edit replaced this text. */
  edited_at: string
}

/** Who has read a message (`GET .../messages/{id}/receipts`); the sender is in neither list. */
export interface Receipts {
  message_id: number
  read_by: { user_id: number; last_read_seq: number }[]
  unread_by: number[]
}

/** A message that mentions the caller after their read position (`GET /api/mentions/unread`). */
export interface UnreadMention {
  chat_id: number
  message: Message
  mention_type: 'user' | 'everyone' | 'here'
}

/** `reaction_added` / `reaction_removed` on the live stream. */
export interface ReactionEvent {
  chat_id: number
  message_id: number
  user_id: number
  emoji: string
}

export type PresenceStatus = 'online' | 'away' | 'offline'

export interface Presence {
  user_id: number
  status: PresenceStatus
}

export interface Chat {
  id: number
  workspace_id: number
  name: string
  chat_type: ChatType
  description: string | null
  owner_id: number
  member_ids: number[]
  last_seq: number
  unread_count: number
  last_message: Message | null
  created_at: string
  /** Archived: readable, but no sends, edits, reactions, pins or new members. */
  archived?: boolean
  /** Messages mentioning the caller after their read position. */
  unread_mentions?: number
}

export type ChatRole = 'owner' | 'admin' | 'member'

/** A member as `GET /api/chat/{id}/members` lists them: the user and their role in that chat. */
export interface ChatMember extends User {
  role: ChatRole
}

export interface SearchHit {
  message: Message
  highlight: string
}

/** A pinned message (`GET /api/chat/{id}/pins`, and `message_pinned` on the live stream). */
export interface Pin {
  chat_id: number
  message: Message
  pinned_by: number
  pinned_at: string
}

/** `message_unpinned` on the live stream (also sent when a pinned message is deleted). */
export interface UnpinEvent {
  chat_id: number
  message_id: number
  unpinned_by: number
}
