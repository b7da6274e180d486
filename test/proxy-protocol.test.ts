// Behind a load balancer: the broker with --proxy-protocol takes the device's address from the PROXY
// protocol v2 header (built here with proxy-protocol-js, as HAProxy's send-proxy-v2 writes it), and
// the OTA endpoint believes X-Forwarded-For only from --trusted-proxies.
import http from 'node:http';
import net from 'node:net';
import mqtt, { MqttClient } from 'mqtt';
import { IPv4Address, IPv4ProxyAddress, IPv6Address, IPv6ProxyAddress, Command, TransportProtocol, V2ProxyProtocol } from 'proxy-protocol-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { DeviceIdentity } from '../src/broker/mqtt-broker.js';
import { clientAddress, trustedProxyList } from '../src/net/forwarded.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { makeDevice, nextEvent, sleep, startBroker, type RunningBroker } from './helpers/broker-fixture.js';

const running: RunningBroker[] = [];
afterEach(async () => {
  await Promise.allSettled(running.splice(0).map((b) => b.broker.stop()));
});

function v4Header(source: [number, number, number, number], port: number): Buffer {
  return Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM,
    new IPv4ProxyAddress(IPv4Address.createFrom(source), port, IPv4Address.createFrom([127, 0, 0, 1]), 1883)).build());
}

/** An MQTT client whose socket first writes `header` (the load balancer's part). */
function connectThrough(port: number, header: Buffer, d = makeDevice()) {
  const stream = () => {
    const s = net.connect(port, '127.0.0.1');
    s.write(header);
    return s;
  };
  const client = new MqttClient(stream, {
    protocolVersion: 4, clean: true, keepalive: 60, clientId: d.clientId, username: d.username, password: d.password, reconnectPeriod: 0,
  });
  return { client, d };
}

describe('PROXY protocol v2 on the MQTT listener', () => {
  it('the identity carries the address from the header (IPv4 and IPv6), and limits count it', async () => {
    const b = await startBroker({ proxyProtocol: true, limits: { connectsPerIpPerMinute: 2 } });
    running.push(b);
    const seen = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const { client } = connectThrough(b.port, v4Header([198, 51, 100, 7], 40123));
    const [identity] = await seen;
    expect(identity.remoteAddress).toBe('198.51.100.7');
    expect(identity.remotePort).toBe(40123);
    client.end(true);

    const v6 = Buffer.from(new V2ProxyProtocol(Command.PROXY, TransportProtocol.STREAM,
      new IPv6ProxyAddress(IPv6Address.createFrom([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x42]), 5555,
        IPv6Address.createFrom(new Array(16).fill(0)), 1883)).build());
    const seen6 = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const six = connectThrough(b.port, v6);
    expect((await seen6)[0].remoteAddress).toBe('2001:db8::42');
    six.client.end(true);

    // Two connects per minute from 198.51.100.7: the third is refused, while another address passes.
    connectThrough(b.port, v4Header([198, 51, 100, 7], 1)).client.on('error', () => {});
    await sleep(200);
    const refusedBefore = b.broker.stats().refused.rateLimited;
    const third = connectThrough(b.port, v4Header([198, 51, 100, 7], 2));
    third.client.on('error', () => {});
    await sleep(300);
    expect(b.broker.stats().refused.rateLimited).toBe(refusedBefore + 1);
    const other = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const ok = connectThrough(b.port, v4Header([203, 0, 113, 9], 3));
    expect((await other)[0].remoteAddress).toBe('203.0.113.9');
    ok.client.end(true);
    third.client.end(true);
  });

  it('a connection without a valid header is closed and counted; a LOCAL header (health check) uses the peer', async () => {
    const b = await startBroker({ proxyProtocol: true, limits: { connectTimeoutMs: 500 } });
    running.push(b);
    const plain = mqtt.connect({ host: '127.0.0.1', port: b.port, protocolVersion: 4, reconnectPeriod: 0, clientId: 'x', connectTimeout: 2000 });
    plain.on('error', () => {});
    await new Promise<void>((r) => plain.once('close', () => r()));
    expect(b.broker.stats().refused.proxyHeader).toBe(1);

    const silent = net.connect(b.port, '127.0.0.1');
    silent.on('error', () => {});
    await new Promise((r) => silent.once('close', r));
    expect(b.broker.stats().refused.proxyHeader).toBe(2);

    const local = Buffer.concat([Buffer.from('0d0a0d0a000d0a515549540a', 'hex'), Buffer.from([0x20, 0x00, 0x00, 0x00])]);
    const seen = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const { client } = connectThrough(b.port, local);
    expect((await seen)[0].remoteAddress).toBe('127.0.0.1');
    client.end(true);
  });
});

describe('X-Forwarded-For from trusted proxies only', () => {
  async function addressSeen(trusted: string, xff: string | undefined): Promise<string> {
    const list = trusted ? trustedProxyList(trusted) : undefined;
    const server = http.createServer((req, res) => res.end(clientAddress(req, list)));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: xff ? { 'x-forwarded-for': xff } : {} });
      return await res.text();
    } finally {
      server.close();
    }
  }

  it('uses the nearest untrusted hop; ignores the header from an untrusted peer', async () => {
    expect(await addressSeen('', '203.0.113.5')).toBe('127.0.0.1');
    expect(await addressSeen('10.0.0.0/8', '203.0.113.5')).toBe('127.0.0.1');
    expect(await addressSeen('127.0.0.1', '203.0.113.5')).toBe('203.0.113.5');
    // A client that forges the header cannot choose its address: the hop the proxy appended counts.
    expect(await addressSeen('127.0.0.1', '1.2.3.4, 203.0.113.5')).toBe('203.0.113.5');
    expect(await addressSeen('127.0.0.0/8, 10.0.0.0/8', '1.2.3.4, 203.0.113.5, 10.1.1.1')).toBe('203.0.113.5');
    expect(await addressSeen('127.0.0.1', 'not-an-ip')).toBe('127.0.0.1');
  });

  it('a bad entry in trustedProxies is a configuration error naming it', () => {
    expect(() => loadConfig({ env: {}, overrides: { trustedProxies: '10.0.0.1, 10.0.0.0/99' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: {}, overrides: { trustedProxies: 'proxy.local' } })).toThrow(/proxy\.local/);
    expect(loadConfig({ env: {}, flags: { '--proxy-protocol': 'true', '--trusted-proxies': '127.0.0.1,::1' } }).proxyProtocol).toBe(true);
  });
});
