import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

const gateway = `http://127.0.0.1:${process.env.GATEWAY_PORT || '8080'}`

export default defineConfig({
  plugins: [vue()],
  server: {
    port: 5173,
    strictPort: true,
    proxy: {
      '/api': { target: gateway, changeOrigin: true },
      '/sse': { target: gateway, changeOrigin: true },
      '/events': { target: gateway, changeOrigin: true },
    },
  },
  build: {
    target: 'es2022',
    assetsDir: 'assets',
    sourcemap: false,
  },
  test: {
    environment: 'node',
    include: ['tests/**/*.test.ts'],
  },
})
