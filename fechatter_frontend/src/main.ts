import { createApp } from 'vue'
import { createPinia } from 'pinia'
import App from './App.vue'
import { router } from './router'
import { useAuthStore } from './stores/auth'
import { applyTheme, currentTheme } from './lib/theme'
import './styles.css'

applyTheme(currentTheme())
const app = createApp(App)
app.use(createPinia())
useAuthStore().init()
app.use(router)
app.mount('#app')
