/** How far (px) a scrolled list is from its bottom end. */
export function distanceToBottom(el: HTMLElement): number {
  return el.scrollHeight - el.scrollTop - el.clientHeight
}

/** Close enough to the newest messages that new ones should keep them in view (no list yet counts too). */
export function nearBottom(el: HTMLElement | null): boolean {
  return !el || distanceToBottom(el) < 120
}
