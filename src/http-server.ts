// The gateway's HTTP side: OTA/activation for devices (the firmware's conventional path
// /xiaozhi/ota/), Prometheus /metrics, and /healthz and /readyz for orchestrators.
import http from 'node:http';
import type { Registry } from 'prom-client';
import { OTA_PATHS } from './device/ota.js';

export type RequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface HttpServerOptions {
  ota: RequestHandler;
  registry: Registry;
  /** /metrics text instead of registry.metrics() (a cluster worker serves the primary's aggregate). */
  metrics?: () => Promise<string>;
  /** Routes tried before the built-in ones (the device directory); true when they answered. */
  routes?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  /** Ready = every listener bound and not shutting down. */
  ready(): boolean;
}

export function createHttpServer(options: HttpServerOptions): http.Server {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (OTA_PATHS.includes(path)) {
      options.ota(req, res);
      return;
    }
    if (options.routes?.(req, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    switch (path) {
      case '/metrics':
        (options.metrics ?? (() => options.registry.metrics()))().then(
          (text) => res.writeHead(200, { 'content-type': options.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
        );
        return;
      case '/healthz':
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}\n');
        return;
      case '/readyz': {
        const ready = options.ready();
        res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(`{"ready":${ready}}\n`);
        return;
      }
      default:
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}\n');
    }
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 15_000;
  server.keepAliveTimeout = 5_000;
  return server;
}
