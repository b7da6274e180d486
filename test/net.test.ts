// The pieces every network limit is made of: address keys, token buckets, the per-connection log
// budget. Clocks are injected: nothing here sleeps.
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ipLimitKey, normalizeIp } from '../src/net/address.js';
import { LogBudget } from '../src/net/log-budget.js';
import { KeyedRateLimiter, TokenBucket } from '../src/net/rate-limit.js';
import { publishTopicProblem } from '../src/net/mqtt-topics.js';
import { CONFIG_DEFAULTS, loadConfig } from '../src/config.js';
import { MqttBroker } from '../src/broker/mqtt-broker.js';
import { createOtaHandler } from '../src/device/ota.js';

describe('addresses', () => {
  it('normalizes IPv4-mapped IPv6 addresses', () => {
    expect(normalizeIp('::ffff:192.168.1.5')).toBe('192.168.1.5');
    expect(normalizeIp('2001:db8::1')).toBe('2001:db8::1');
    expect(normalizeIp('10.0.0.1')).toBe('10.0.0.1');
  });

  it('counts IPv6 by its /64 and IPv4 by its address', () => {
    expect(ipLimitKey('10.0.0.1')).toBe('10.0.0.1');
    expect(ipLimitKey('::ffff:10.0.0.1')).toBe('10.0.0.1');
    expect(ipLimitKey('2001:db8:1:2::1')).toBe('2001:db8:1:2::/64');
    expect(ipLimitKey('2001:db8:1:2:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(ipLimitKey('2001:0db8:0001:0002:aaaa::')).toBe('2001:db8:1:2::/64');
    expect(ipLimitKey('2001:db8:1:3::1')).not.toBe(ipLimitKey('2001:db8:1:2::1'));
    expect(ipLimitKey('::1')).toBe('0:0:0:0::/64');
    expect(ipLimitKey('fe80::1%eth0')).toBe('fe80:0:0:0::/64');
  });
});

describe('token buckets', () => {
  it('allow the burst, then the rate', () => {
    const b = new TokenBucket(10, 5, 0);
    let ok = 0;
    for (let i = 0; i < 20; i++) if (b.take(0)) ok++;
    expect(ok).toBe(5);
    expect(b.take(50)).toBe(false);   // half a token
    expect(b.take(100)).toBe(true);   // one token after 100 ms at 10/s
    expect(b.isFull(100)).toBe(false);
    expect(b.isFull(1000)).toBe(true);
  });

  it('keep one bucket per key with bounded memory', () => {
    let now = 0;
    const l = new KeyedRateLimiter({ perMinute: 2, now: () => now, maxTrackedKeys: 3 });
    expect([l.tryConsume('a'), l.tryConsume('a'), l.tryConsume('a')]).toEqual([true, true, false]);
    expect(l.tryConsume('b')).toBe(true);
    for (const k of ['c', 'd', 'e', 'f']) l.tryConsume(k);
    expect(l.trackedKeys).toBeLessThanOrEqual(3);
    now = 60_000;
    l.sweep();
    expect(l.trackedKeys).toBe(0);
  });
});

describe('log budget', () => {
  it('passes perMinute lines, then summarizes what it suppressed', () => {
    const lines: Array<{ msg: string; suppressed?: number }> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => { lines.push(JSON.parse(s)); } });
    let now = 0;
    const budget = new LogBudget(logger, 3, () => now);
    for (let i = 0; i < 100; i++) budget.warn({ i }, 'rejected');
    expect(lines).toHaveLength(3);
    expect(budget.suppressed).toBe(97);
    now = 60_000;
    budget.warn({}, 'rejected');
    expect(lines).toHaveLength(5);
    expect(lines[3]).toMatchObject({ suppressed: 97 });
    budget.close();
    expect(lines).toHaveLength(5);
  });
});

describe('publish topics: one rule for the config, the broker and the OTA reply', () => {
  const logger = pino({ level: 'silent' });
  const bad = ['', '#', 'a/+/b', '$SYS/x', 'devices/p2p/x', 'a\u0000b', 'x'.repeat(257)];

  it('each place refuses exactly what the rule refuses', () => {
    for (const topic of bad) {
      expect(publishTopicProblem(topic), topic).toBeDefined();
      expect(() => loadConfig({ env: {}, overrides: { publishTopic: topic } }), topic).toThrow(/publishTopic/);
      expect(() => new MqttBroker({ auth: { mode: 'open' }, logger, publishTopic: topic }), topic).toThrow(/publishTopic/);
      expect(() => createOtaHandler({ publicHost: 'h', mqttPort: 1883, logger, publishTopic: topic }), topic).toThrow(/publishTopic/);
    }
    for (const topic of ['device-server', 'xiaozhi/up', 'devices/p2p']) {
      expect(publishTopicProblem(topic), topic).toBeUndefined();
      expect(loadConfig({ env: {}, overrides: { publishTopic: topic } }).publishTopic).toBe(topic);
      expect(() => new MqttBroker({ auth: { mode: 'open' }, logger, publishTopic: topic })).not.toThrow();
      expect(() => createOtaHandler({ publicHost: 'h', mqttPort: 1883, logger, publishTopic: topic })).not.toThrow();
    }
  });

  it('the default comes from the config schema', () => {
    expect(CONFIG_DEFAULTS.publishTopic).toBe('device-server');
    expect(loadConfig({ env: {} }).publishTopic).toBe(CONFIG_DEFAULTS.publishTopic);
  });
});
