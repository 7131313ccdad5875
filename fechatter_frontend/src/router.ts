import { createRouter, createWebHistory } from 'vue-router'
import { useAuthStore } from './stores/auth'
import SignInView from './views/SignInView.vue'
import SignUpView from './views/SignUpView.vue'
import WorkspaceView from './views/WorkspaceView.vue'
import HomeView from './views/HomeView.vue'
import ChatView from './views/ChatView.vue'

export const router = createRouter({
  history: createWebHistory(),
  routes: [
    { path: '/signin', name: 'signin', component: SignInView, meta: { public: true } },
    { path: '/signup', name: 'signup', component: SignUpView, meta: { public: true } },
    { path: '/invite/:code', name: 'invite', component: SignUpView, meta: { public: true }, props: true },
    {
      path: '/',
      component: WorkspaceView,
      children: [
        { path: '', name: 'home', component: HomeView },
        { path: 'chat/:id(\\d+)', name: 'chat', component: ChatView, props: (r) => ({ id: Number(r.params.id), seq: r.query.seq ? Number(r.query.seq) : undefined }) },
      ],
    },
    { path: '/:rest(.*)*', redirect: '/' },
  ],
})

router.beforeEach((to) => {
  const auth = useAuthStore()
  if (!to.meta.public && !auth.signedIn) return { name: 'signin', query: to.fullPath !== '/' ? { next: to.fullPath } : {} }
  if ((to.name === 'signin' || to.name === 'signup') && auth.signedIn) return { name: 'home' }
  return true
})
