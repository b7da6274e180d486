// The device's OTA / activation check (Ota::CheckVersion): POST of the system-info JSON with the
// firmware's headers, HTTP 200 JSON back. node:http is used directly so no header is added beyond
// what esp_http_client sends (Host, Content-Length, Connection).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface DeviceIdentity {
  /** aa:bb:cc:dd:ee:ff, lower case. */
  mac: string;
  uuid: string;
  board: string;
  version: string;
  language: string;
  chip: string;
}

/** Board::GetSystemInfoJson, member for member (values of a 16 MB ESP32-S3 board). */
export function systemInfoJson(id: DeviceIdentity): string {
  const sha = '0'.repeat(64);
  return (
    `{"version":2,"language":"${id.language}","flash_size":16777216,"minimum_free_heap_size":"8220000",` +
    `"mac_address":"${id.mac}","uuid":"${id.uuid}","chip_model_name":"${id.chip}",` +
    `"chip_info":{"model":9,"cores":2,"revision":2,"features":18},` +
    `"application":{"name":"xiaozhi","version":"${id.version}","compile_time":"Jul 20 2026T12:00:00Z",` +
    `"idf_version":"v5.5.1","elf_sha256":"${sha}"},` +
    `"partition_table": [{"label":"nvs","type":1,"subtype":2,"address":36864,"size":16384},` +
    `{"label":"otadata","type":1,"subtype":0,"address":53248,"size":8192},` +
    `{"label":"phy_init","type":1,"subtype":1,"address":61440,"size":4096},` +
    `{"label":"ota_0","type":0,"subtype":16,"address":131072,"size":4128768},` +
    `{"label":"ota_1","type":0,"subtype":17,"address":4259840,"size":4128768},` +
    `{"label":"assets","type":1,"subtype":130,"address":8388608,"size":8388608}],` +
    `"ota":{"label":"ota_0"},` +
    `"display":{"monochrome":false,"width":240,"height":240},` +
    `"board":{"type":"${id.board}","name":"${id.board}","ssid":"sim","rssi":-50,"channel":6,"ip":"127.0.0.1","mac":"${id.mac}"}}`
  );
}

export interface OtaResponse {
  status: number;
  body: string;
}

/** The headers Ota::SetupHttp sets, in its order. */
export function otaHeaders(id: DeviceIdentity, bodyLength: number): Record<string, string> {
  return {
    'Activation-Version': '1',
    'Device-Id': id.mac,
    'Client-Id': id.uuid,
    'User-Agent': `${id.board}/${id.version}`,
    'Accept-Language': id.language,
    'Content-Type': 'application/json',
    'Content-Length': String(bodyLength),
  };
}

export function otaRequest(url: string, id: DeviceIdentity, timeoutMs = 10_000, insecure = false, localAddress?: string): Promise<OtaResponse> {
  const body = Buffer.from(systemInfoJson(id));
  const u = new URL(url);
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(
      u,
      {
        method: 'POST',
        headers: otaHeaders(id, body.length),
        agent: false,
        timeout: timeoutMs,
        ...(localAddress ? { localAddress } : {}),
        ...(u.protocol === 'https:' && insecure ? { rejectUnauthorized: false } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    r.on('timeout', () => r.destroy(new Error(`OTA request timed out after ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end(body);
  });
}
