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
