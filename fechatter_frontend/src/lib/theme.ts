export type Theme = 'system' | 'light' | 'dark'
const KEY = 'fechatter.theme'

export function currentTheme(): Theme {
  const t = localStorage.getItem(KEY)
  return t === 'light' || t === 'dark' ? t : 'system'
}

export function applyTheme(theme: Theme): void {
  if (theme === 'system') {
    delete document.documentElement.dataset.theme
    localStorage.removeItem(KEY)
  } else {
    document.documentElement.dataset.theme = theme
    localStorage.setItem(KEY, theme)
  }
}

export function effectiveDark(): boolean {
  const t = currentTheme()
  if (t !== 'system') return t === 'dark'
  return window.matchMedia?.('(prefers-color-scheme: dark)').matches ?? false
}
