// src/livekit reaches into @livekit/rtc-node internals that no public API offers (see
// src/livekit/ffi-release.ts for why): the process-wide FfiClient on globalThis._ffiClientInstance
// and its 'ffi_event' bus, Room#onFfiEvent (the room's listener on that bus), the FfiHandle each
// object owns under `ffiHandle` or `ffi_handle`, and Room#preConnectEvents (why 'logs' events are
// dropped). rtc-node is pinned to exactly the version this was checked against; this test fails
// loudly when an upgrade moves any of them. No LiveKit server is needed; the behaviour with a real
// server is pinned in test/livekit-resources.test.ts ('rtc-node contract').
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AudioSource, Room } from '@livekit/rtc-node';
import { describe, expect, it } from 'vitest';
import { detachRoom, dropFfiLogEvents, ffiClient, ffiListenerCount, ffiLogEventsDropped, releaseFfiHandle, roomFfiListener } from '../src/livekit/ffi-release.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const PINNED = '1.1.0';
const rtcDist = dirname(createRequire(import.meta.url).resolve('@livekit/rtc-node'));
const rtcSource = (file: string): string => readFileSync(join(rtcDist, file), 'utf8');

describe('rtc-node: the version the internals were checked against', () => {
  it(`is pinned exactly (${PINNED}) in package.json and package-lock.json, and installed`, () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
    expect(pkg.dependencies['@livekit/rtc-node']).toBe(PINNED);
    const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; dependencies?: Record<string, string> }> };
    expect(lock.packages['']!.dependencies!['@livekit/rtc-node']).toBe(PINNED);
    expect(lock.packages['node_modules/@livekit/rtc-node']!.version).toBe(PINNED);
    const installed = JSON.parse(readFileSync(join(rtcDist, '..', 'package.json'), 'utf8')) as { version: string };
    expect(installed.version).toBe(PINNED);
  });
});

describe('rtc-node internals src/livekit touches', () => {
  it('the FfiClient lives on globalThis._ffiClientInstance and is an event emitter with an ffi_event bus', () => {
    expect(rtcSource('ffi_client.cjs')).toMatch(/globalThis\._ffiClientInstance = new FfiClient\(\)/);
    const source = new AudioSource(16000, 1);  // any FFI request creates the client
    try {
      const ffi = ffiClient() as unknown as Record<string, unknown> | undefined;
      expect(ffi).toBeDefined();
      for (const method of ['on', 'off', 'emit', 'listeners', 'listenerCount']) expect(typeof ffi![method], method).toBe('function');
      expect(typeof ffiListenerCount()).toBe('number');
      expect(rtcSource('ffi_client.cjs')).toMatch(/\["FfiEvent"\] = "ffi_event"/);
    } finally {
      source.close();
    }
  });

  it('objects own an FfiHandle with dispose() under ffiHandle (room, publication, source, stream) or ffi_handle (participant, track)', () => {
    const source = new AudioSource(16000, 1);
    const h = (source as unknown as { ffiHandle?: { dispose?: unknown; handle?: unknown } }).ffiHandle;
    expect(typeof h?.dispose).toBe('function');
    expect(typeof h?.handle).toBe('bigint');
    expect(releaseFfiHandle(source)).toBe(true);
    // A released handle is done with: a second dispose() (rtc-node's GC finalizer) does nothing.
    expect(releaseFfiHandle(source)).toBe(true);
    for (const [file, field] of [
      ['room.cjs', 'ffiHandle'], ['track_publication.cjs', 'ffiHandle'], ['audio_source.cjs', 'ffiHandle'], ['audio_stream.cjs', 'ffiHandle'],
      ['participant.cjs', 'ffi_handle'], ['track.cjs', 'ffi_handle'],
    ] as const) {
      expect(rtcSource(file), `${file}: this.${field} = new ...FfiHandle(`).toMatch(new RegExp(`this\\.${field} = new [\\w.]*FfiHandle\\(`));
    }
  });

  it('a Room listens on the bus with its own onFfiEvent, keeps pre-connect events, and detachRoom() only removes what is there', () => {
    const room = new Room();
    expect(typeof roomFfiListener(room)).toBe('function');
    expect(Array.isArray((room as unknown as { preConnectEvents?: unknown }).preConnectEvents)).toBe(true);
    expect(rtcSource('room.cjs')).toMatch(/FfiClient\.instance\.on\([\w.]*FfiEvent, this\.onFfiEvent\)/);
    expect(detachRoom(room)).toBe(false);  // never connected: not on the bus
  });

  it("dropFfiLogEvents() drops 'logs' events before any listener sees them and passes every other event", () => {
    const source = new AudioSource(16000, 1);
    const ffi = ffiClient() as unknown as { on(e: string, l: (ev: unknown) => void): void; off(e: string, l: (ev: unknown) => void): void; emit(e: string, ev: unknown): boolean };
    const seen: string[] = [];
    const spy = (ev: unknown) => seen.push((ev as { message?: { case?: string } }).message?.case ?? '?');
    ffi.on('ffi_event', spy);
    try {
      expect(dropFfiLogEvents()).toBe(true);
      expect(dropFfiLogEvents()).toBe(true);  // idempotent: one filter
      const dropped = ffiLogEventsDropped();
      ffi.emit('ffi_event', { message: { case: 'logs', value: { records: [] } } });
      ffi.emit('ffi_event', { message: { case: 'getStats', value: {} } });
      expect(ffiLogEventsDropped()).toBe(dropped + 1);
      expect(seen).toEqual(['getStats']);
    } finally {
      ffi.off('ffi_event', spy);
      source.close();
    }
  });
});
