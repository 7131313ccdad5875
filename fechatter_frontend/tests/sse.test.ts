import { beforeEach, describe, expect, it } from 'vitest'
import { SseClient } from '../src/realtime/sse'
import { FakeEventSource } from './fakes'

function client(token = { value: 'tok-1' }) {
  const seen: Array<{ type: string; data: unknown; id: string | null }> = []
  const timers: Array<() => void> = []
  const sse = new SseClient({
    token: () => token.value,
    create: (url) => new FakeEventSource(url),
    onEvent: (type, data, id) => seen.push({ type, data, id }),
    schedule: (fn) => timers.push(fn),
    cancel: () => {},
  })
  return { sse, seen, timers, token }
}

beforeEach(() => {
  FakeEventSource.instances = []
})

describe('SseClient', () => {
  it('connects with the access token and no resume point the first time', () => {
    const { sse } = client()
    sse.start()
    const es = FakeEventSource.instances[0]
    expect(es.query.get('access_token')).toBe('tok-1')
    expect(es.query.has('last_event_id')).toBe(false)
  })

  it('delivers events in stream order with their ids', () => {
    const { sse, seen } = client()
    sse.start()
    const es = FakeEventSource.instances[0]
    es.open()
    es.emit('new_message', { seq: 1 }, '10')
    es.emit('message_read', { chat_id: 1 }, '11')
    es.emit('new_message', { seq: 2 }, '12')
    expect(seen.map((e) => [e.type, e.id])).toEqual([
      ['new_message', '10'],
      ['message_read', '11'],
      ['new_message', '12'],
    ])
    expect(sse.lastEventId).toBe('12')
  })

  it('drops events it has already seen when a replay overlaps', () => {
    const { sse, seen } = client()
    sse.start()
    const es = FakeEventSource.instances[0]
    es.emit('new_message', { seq: 1 }, '5')
    es.emit('new_message', { seq: 2 }, '6')
    es.emit('new_message', { seq: 1 }, '5')
    es.emit('new_message', { seq: 2 }, '6')
    es.emit('new_message', { seq: 3 }, '7')
    expect(seen.map((e) => e.id)).toEqual(['5', '6', '7'])
  })

  it('passes on live-only events, which the browser labels with the previous id, and resumes after real ones', () => {
    const { sse, seen } = client()
    sse.start()
    const es = FakeEventSource.instances[0]
    es.open()
    es.emit('new_message', { seq: 1 }, '5')
    // Typing and presence carry no id: the browser repeats the last one it saw.
    es.emit('typing_started', { chat_id: 1, user_id: 2 }, '5')
    es.emit('user_presence', { user_id: 2, status: 'offline' }, '5')
    es.emit('typing_stopped', { chat_id: 1, user_id: 2 }, '5')
    es.emit('new_message', { seq: 1 }, '5') // a real replay is still dropped
    expect(seen.map((e) => [e.type, e.id])).toEqual([
      ['new_message', '5'],
      ['typing_started', null],
      ['user_presence', null],
      ['typing_stopped', null],
    ])
    expect(sse.lastEventId).toBe('5')
  })

  it('resumes after the last event with a fresh token when it must open a new EventSource', () => {
    const { sse, timers, token } = client()
    sse.start()
    const first = FakeEventSource.instances[0]
    first.open()
    first.emit('new_message', { seq: 1 }, '41')
    token.value = 'tok-2'
    first.fail() // e.g. 401 after the token expired
    expect(FakeEventSource.instances).toHaveLength(1)
    timers.shift()?.()
    const second = FakeEventSource.instances[1]
    expect(second.query.get('last_event_id')).toBe('41')
    expect(second.query.get('access_token')).toBe('tok-2')
  })

  it('leaves a dropped connection to the browser, which resumes the same EventSource by Last-Event-ID', () => {
    const { sse, timers } = client()
    sse.start()
    FakeEventSource.instances[0].drop()
    expect(timers).toHaveLength(0)
    expect(FakeEventSource.instances).toHaveLength(1)
  })

  it('ignores events from a source it replaced', () => {
    const { sse, seen } = client()
    sse.start()
    const old = FakeEventSource.instances[0]
    old.emit('new_message', { seq: 1 }, '1')
    sse.suspend()
    sse.reconnect()
    expect(old.closed).toBe(true)
    old.emit('new_message', { seq: 2 }, '2')
    const fresh = FakeEventSource.instances[1]
    expect(fresh.query.get('last_event_id')).toBe('1')
    fresh.emit('new_message', { seq: 2 }, '2')
    expect(seen.map((e) => e.id)).toEqual(['1', '2'])
  })

  it('stops for good on stop()', () => {
    const { sse, timers } = client()
    sse.start()
    sse.stop()
    expect(FakeEventSource.instances[0].closed).toBe(true)
    sse.reconnect()
    expect(FakeEventSource.instances).toHaveLength(1)
    expect(timers).toHaveLength(0)
  })
})
