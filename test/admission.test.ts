// Admission control: readings decide, refusals are counted by reason, and a refused device gets a
// hello reply, an alert and a goodbye for that session, with nothing opened for it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdmissionControl, type AdmissionSensors } from '../src/device/admission.js';
import { Gateway } from '../src/gateway.js';
import { RawDevice } from './helpers/raw-device.js';

function fakeSensors(readings: { cpu: number; lag: number }): AdmissionSensors {
  return { cpu: () => readings.cpu, eventLoopLagMs: () => readings.lag, nextWindow: () => {}, close: () => {} };
}

describe('AdmissionControl', () => {
  it('refuses on CPU, event-loop delay or the session cap, and counts each reason', () => {
    const r = { cpu: 0.5, lag: 5 };
    const a = new AdmissionControl({ maxCpu: 0.85, maxEventLoopLagMs: 40, maxSessions: 3 }, { sensors: fakeSensors(r), intervalMs: 3_600_000 });
    const samples = (n: number) => { for (let i = 0; i < n; i++) a.sample(); };
    samples(3);
    expect(a.admit(0)).toEqual({ ok: true });
    r.cpu = 0.95;
    a.sample();  // one busy second among three: mean 0.65, still admitted
    expect(a.admit(0)).toEqual({ ok: true });
    samples(2);  // three busy seconds
    expect(a.admit(0)).toEqual({ ok: false, reason: 'cpu' });
    r.cpu = 0.2;
    r.lag = 41;
    samples(3);
    expect(a.admit(0)).toEqual({ ok: false, reason: 'event_loop' });
    r.lag = 1;
    samples(3);
    expect(a.admit(2)).toEqual({ ok: true });
    expect(a.admit(3)).toEqual({ ok: false, reason: 'sessions' });
    expect(a.refused).toEqual({ cpu: 1, event_loop: 1, sessions: 1 });
    expect(a.state.busy).toBeNull();
    expect(a.state.cpu).toBeCloseTo(0.2);
    expect(a.state.eventLoopLagMs).toBeCloseTo(1);
    a.close();
  });

  it('with thresholds off, only the session cap applies', () => {
    const a = new AdmissionControl({ maxCpu: 1, maxEventLoopLagMs: 0, maxSessions: 0 }, { sensors: fakeSensors({ cpu: 1, lag: 5000 }), intervalMs: 3_600_000 });
    a.sample();
    expect(a.admit(1_000_000)).toEqual({ ok: true });
    a.close();
  });

  it('the default sensors read a machine CPU share and a non-negative event-loop delay', async () => {
    const a = new AdmissionControl({ maxCpu: 1, maxEventLoopLagMs: 0, maxSessions: 0 }, { intervalMs: 3_600_000 });
    const until = performance.now() + 100;
    while (performance.now() < until) { /* keep one core busy */ }
    await new Promise((r) => setTimeout(r, 20));
    const s = a.sample();
    expect(s.cpu).toBeGreaterThan(0);
    expect(s.cpu).toBeLessThanOrEqual(1);
    expect(s.eventLoopLagMs).toBeGreaterThanOrEqual(0);
    a.close();
  });
});

describe('a gateway at its session cap', () => {
  let gw: Gateway;
  const devices: RawDevice[] = [];
  beforeAll(async () => {
    gw = await Gateway.start({
      mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', auth: 'signature',
      signatureKey: 'test-signature-key-0123456789', logLevel: 'silent', maxSessions: 1,
    });
  });
  afterAll(async () => {
    await Promise.all(devices.map((d) => d.close()));
    await gw.stop('test end');
  });

  it('answers "gateway busy" (hello reply, alert, goodbye) and opens nothing', async () => {
    const a = await RawDevice.connect(gw.ports.http, '02:ad:00:00:00:01');
    const b = await RawDevice.connect(gw.ports.http, '02:ad:00:00:00:02');
    devices.push(a, b);
    await a.sayHello();
    expect(gw.stats.sessions).toBe(1);
    const reply = await b.sayHello();
    const alert = await b.waitFor((m) => m.type === 'alert', 5000);
    const bye = await b.waitFor((m) => m.type === 'goodbye', 5000);
    expect(alert).toMatchObject({ status: 'busy', session_id: reply.session_id });
    expect(String(alert.message)).toMatch(/busy/);
    expect(bye.session_id).toBe(reply.session_id);
    expect(gw.stats.sessions).toBe(1);
    expect(gw.pipeline.openStreams).toBe(2);
    expect(gw.counters().sessions_refused_sessions).toBe(1);
    const metrics = await (await fetch(`http://127.0.0.1:${gw.ports.http}/metrics`)).text();
    expect(metrics).toMatch(/xiaozhi_gateway_events_total\{event="sessions_refused_sessions"[^}]*\} 1/);
    expect(metrics).toMatch(/xiaozhi_admission\{reading="busy"[^}]*\} 0/);
    // The first device's session goes on; once it ends, the second one is admitted.
    a.publish({ session_id: a.session(), type: 'goodbye' });
    await new Promise((r) => setTimeout(r, 200));
    const again = await b.sayHello();
    expect(again.session_id).not.toBe(reply.session_id);
    expect(gw.stats.sessions).toBe(1);
  });
});
