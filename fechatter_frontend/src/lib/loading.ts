import { ref } from 'vue'

/** What a dialog loads when it opens: `loading` until the load ends, `error` (for a person) if it fails. */
export function useLoad() {
  const loading = ref(true)
  const error = ref('')
  async function load(action: () => Promise<unknown>, fallback: string): Promise<void> {
    try {
      await action()
    } catch (e) {
      error.value = e instanceof Error ? e.message : fallback
    } finally {
      loading.value = false
    }
  }
  return { loading, error, load }
}

/** A dialog's actions, one at a time: `busy` while one runs, its failure (for a person) in `error`. */
export function useAction(error = ref('')) {
  const busy = ref(false)
  async function run(action: () => Promise<unknown>, fallback: string): Promise<boolean> {
    error.value = ''
    busy.value = true
    try {
      await action()
      return true
    } catch (e) {
      error.value = e instanceof Error ? e.message : fallback
      return false
    } finally {
      busy.value = false
    }
  }
  return { busy, error, run }
}
