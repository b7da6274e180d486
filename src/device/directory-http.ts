// The operator's routes to the device directory: GET /devices and POST /devices/{id}/messages,
// behind `Authorization: Bearer <adminToken>`. Without a configured token they are off (404 naming
// the setting), so a gateway never exposes its devices by default.
import { createHash, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { normalizeMac } from './credentials.js';
import type { DeviceDirectory } from './directory.js';

/** A message for a device is a small JSON object (the firmware's own messages are a few hundred bytes). */
export const MAX_DEVICE_MESSAGE_BYTES = 16_384;

export interface DeviceRoutesOptions {
  adminToken: string | undefined;
  directory: () => DeviceDirectory | undefined;
}

/** Handles the request if it is one of the directory routes (true), else leaves it alone (false). */
export type DeviceRoutes = (req: http.IncomingMessage, res: http.ServerResponse) => boolean;

const MESSAGES_PATH = /^\/devices\/([^/]+)\/messages$/;

export function createDeviceRoutes(options: DeviceRoutesOptions): DeviceRoutes {
  const tokenHash = options.adminToken ? sha256(options.adminToken) : undefined;
  const json = (res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    if (res.headersSent) return;
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers }).end(JSON.stringify(body) + '\n');
  };
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const messages = MESSAGES_PATH.exec(path);
    if (path !== '/devices' && !messages) return false;
    if (!tokenHash) {
      json(res, 404, { error: 'the device directory is off: set adminToken (--admin-token or XIAOZHI_ADMIN_TOKEN) to enable GET /devices and POST /devices/{id}/messages' });
      req.resume();
      return true;
    }
    const auth = req.headers.authorization ?? '';
    const given = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
    // Compared as hashes: equal length, constant time, whatever the caller sent.
    if (!given || !timingSafeEqual(sha256(given), tokenHash)) {
      json(res, 401, { error: 'admin token required: Authorization: Bearer <adminToken>' }, { 'www-authenticate': 'Bearer' });
      req.resume();
      return true;
    }
    const directory = options.directory();
    if (!directory) {
      json(res, 503, { error: 'the gateway is not running' });
      req.resume();
      return true;
    }
    if (!messages) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        json(res, 405, { error: 'use GET' }, { allow: 'GET, HEAD' });
        req.resume();
        return true;
      }
      directory.list().then(
        (devices) => json(res, 200, { devices }),
        (err: Error) => json(res, 503, { error: `directory unavailable: ${err.message}` }),
      );
      return true;
    }
    if (req.method !== 'POST') {
      json(res, 405, { error: 'use POST with a JSON object body' }, { allow: 'POST' });
      req.resume();
      return true;
    }
    let deviceId: string;
    try {
      deviceId = normalizeMac(decodeURIComponent(messages[1]!));
    } catch {
      json(res, 400, { error: 'the device id is its MAC address, e.g. /devices/aa:bb:cc:dd:ee:ff/messages' });
      req.resume();
      return true;
    }
    readJson(req).then(
      async (message) => {
        const result = await directory.deliver(deviceId, message);
        if (result === 'delivered') json(res, 202, { delivered: true, deviceId });
        else if (result === 'offline') json(res, 404, { error: 'device not connected', deviceId });
        else json(res, 503, { error: 'cannot reach the cluster directory (Redis unreachable) and the device is not connected here', deviceId });
      },
      (err: Error & { status?: number }) => json(res, err.status ?? 400, { error: err.message }),
    ).catch((err: Error) => json(res, 503, { error: `delivery failed: ${err.message}` }));
    return true;
  };
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function readJson(req: http.IncomingMessage): Promise<object> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let failed = false;
    const fail = (status: number, message: string) => {
      if (failed) return;
      failed = true;
      reject(Object.assign(new Error(message), { status }));
    };
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_DEVICE_MESSAGE_BYTES) fail(413, `message larger than ${MAX_DEVICE_MESSAGE_BYTES} bytes`);
      else chunks.push(c);
    });
    req.on('error', (err) => fail(400, err.message));
    req.on('end', () => {
      if (failed) return;
      let parsed: unknown;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (err) {
        fail(400, `body is not JSON: ${(err as Error).message}`);
        return;
      }
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail(400, 'body must be a JSON object (the message for the device)');
      else resolve(parsed);
    });
  });
}
