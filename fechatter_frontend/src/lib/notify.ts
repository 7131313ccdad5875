/**
 * Desktop notifications for what asks for the person: a direct message or a mention of them, in a chat they
 * are not looking at. Off until the person turns them on (which asks the browser's permission); the choice
 * is remembered on the device for that person only.
 */
const KEY = 'fechatter.notifications'
/** What clicking a notification does with its chat (the workspace view sets it: it owns the router). */
let openChat: (chatId: number) => void = () => {}
const shown = new Set<Notification>()

export function onNotificationClick(open: (chatId: number) => void): void {
  openChat = open
}

export function notificationsSupported(): boolean {
  return typeof window !== 'undefined' && 'Notification' in window
}

function key(userId: number): string {
  return `${KEY}.${userId}`
}

export function notificationsOn(userId: number | undefined): boolean {
  return (
    userId !== undefined &&
    notificationsSupported() &&
    Notification.permission === 'granted' &&
    localStorage.getItem(key(userId)) === 'on'
  )
}

/** Turn notifications on (asking the browser) or off for this person; returns whether they are on now. */
export async function setNotifications(userId: number, on: boolean): Promise<boolean> {
  if (!on || !notificationsSupported()) {
    localStorage.removeItem(key(userId))
    return false
  }
  const permission = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission()
  if (permission !== 'granted') {
    localStorage.removeItem(key(userId))
    return false
  }
  localStorage.setItem(key(userId), 'on')
  return true
}

/** Show one notification; one per chat at a time (a newer one replaces it). Clicking it opens the chat. */
export function notify(userId: number, chatId: number, title: string, body: string): void {
  if (!notificationsOn(userId)) return
  const note = new Notification(title, { body, tag: `chat-${chatId}` })
  shown.add(note)
  note.onclick = () => {
    window.focus()
    openChat(chatId)
    note.close()
    shown.delete(note)
  }
}

/** On sign-out: what is on screen goes, and clicks lead nowhere. */
export function closeNotifications(): void {
  for (const note of shown) note.close()
  shown.clear()
  openChat = () => {}
}
