import { useChatsStore } from './chats'
import { useMessagesStore } from './messages'
import { usePinsStore } from './pins'
import { usePresenceStore } from './presence'

/** Forget everything held about the current workspace: on sign-out, and before entering another one. */
export function forgetWorkspace(): void {
  useChatsStore().reset()
  useMessagesStore().reset()
  usePresenceStore().reset()
  usePinsStore().$reset()
}
