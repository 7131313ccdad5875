/**
 * Desktop notifications for what asks for the person: a direct message or a mention of them, in a chat they
 * are not looking at. Off until the person turns them on (which asks the browser's permission); the choice
 * is remembered on the device.
 */
const KEY = 'fechatter.notifications'
/** What clicking a notification does with its chat (the workspace view sets it: it owns the router). */
let openChat: (chatId: number) => void = () => {}

export function onNotificationClick(open: (chatId: number) => void): void {
  openChat = open
}

export function notificationsSupported(): boolean {
  return typeof window !== 'undefined' && 'Notification' in window
}

export function notificationsOn(): boolean {
  return notificationsSupported() && Notification.permission === 'granted' && localStorage.getItem(KEY) === 'on'
}

/** Turn notifications on (asking the browser) or off; returns whether they are on now. */
export async function setNotifications(on: boolean): Promise<boolean> {
  if (!on || !notificationsSupported()) {
    localStorage.removeItem(KEY)
    return false
  }
  const permission = Notification.permission === 'granted' ? 'granted' : await Notification.requestPermission()
  if (permission !== 'granted') {
    localStorage.removeItem(KEY)
    return false
  }
  localStorage.setItem(KEY, 'on')
  return true
}

/** Show one notification; one per chat at a time (a newer one replaces it). Clicking it opens the chat. */
export function notify(chatId: number, title: string, body: string): void {
  if (!notificationsOn()) return
  const shown = new Notification(title, { body, tag: `chat-${chatId}` })
  shown.onclick = () => {
    window.focus()
    openChat(chatId)
    shown.close()
  }
}
