// Device identity and MQTT credentials, as existing xiaozhi servers hand them out (PROTOCOL.md §1):
//
//   client_id = GID_<group>@@@<mac with '_' instead of ':'>@@@<board uuid>
//   username  = base64(JSON object), conventionally {"ip":"<address the device came from>"}
//   password  = base64(HMAC-SHA256(key = signature secret, msg = client_id + "|" + username))
//
// Client-id forms accepted by parseClientId (every form seen in the firmware's servers and the
// open-source gateways; anything else is rejected with a reason):
//   1. GID_<group>@@@aa_bb_cc_dd_ee_ff@@@<uuid>   the canonical form, handed out by the OTA reply of
//                                                 api.tenclass.net, xiaozhi-esp32-server and ours.
//   2. GID_<group>@@@aa_bb_cc_dd_ee_ff            the legacy form without uuid that the reference
//                                                 MQTT gateway still accepts; `uuid` is undefined.
//   - <group>: 1-64 of [A-Za-z0-9_.-] after the literal "GID_" prefix ("GID_test" -> "test").
//   - MAC: six hex pairs joined by '_'; either case on the wire, lower-cased in the result.
//   - uuid: the textual UUID 8-4-4-4-12 hex the firmware generates for the board; either case,
//     kept as sent (it is part of the signed client id).
// Not accepted: MACs with ':' or '-' inside the client id, missing "GID_" prefix, empty parts,
// extra '@@@' parts, anything longer than 256 characters.
//
// The signature binds the password to the exact client id and username, so the broker checks it
// against the client id the device presents, byte for byte; normalisation happens only afterwards.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { codedError, describe, rangeError, typeError } from '../native/errors.js';

const MAC_COLON = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;
const MAC_UNDERSCORE = /^[0-9a-fA-F]{2}(?:_[0-9a-fA-F]{2}){5}$/;
const UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const GROUP = /^[A-Za-z0-9_.-]{1,64}$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Upper bound on a client id we even try to parse: the canonical form is ~80 characters. */
export const MAX_CLIENT_ID_LENGTH = 256;
/** Upper bound on a username we decode: {"ip":"<IPv6>"} in base64 is under 100 characters. */
export const MAX_USERNAME_LENGTH = 1024;
/** The literal prefix of the group part. */
export const GROUP_PREFIX = 'GID_';
const SEPARATOR = '@@@';
/** base64 of a 32-byte HMAC-SHA256 digest, with padding. */
const PASSWORD_LENGTH = 44;

export interface ClientIdParts {
  /** Group name without the "GID_" prefix. */
  group: string;
  /** Lower-case MAC with ':' separators, e.g. "aa:bb:cc:dd:ee:ff". */
  mac: string;
  /** Board uuid as sent; undefined for the legacy two-part form. */
  uuid: string | undefined;
}

export type ClientIdParseResult = { ok: true; value: ClientIdParts } | { ok: false; reason: string };

function shown(value: string): string {
  return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
}

/** True if `mac` is six hex pairs separated by ':' (either case). */
export function isMac(mac: unknown): mac is string {
  return typeof mac === 'string' && MAC_COLON.test(mac);
}

/** Validates a MAC like "AA:bb:cc:dd:ee:ff" and returns it lower-cased. Throws a coded error otherwise. */
export function normalizeMac(mac: unknown): string {
  if (typeof mac !== 'string') throw typeError('ERR_INVALID_ARG_TYPE', `mac: expected a string like "aa:bb:cc:dd:ee:ff", got ${describe(mac)}`);
  if (!MAC_COLON.test(mac)) throw rangeError('ERR_INVALID_MAC', `mac: expected six hex pairs separated by ':' like "aa:bb:cc:dd:ee:ff", got ${shown(mac)}`);
  return mac.toLowerCase();
}

/** 'aa:bb:cc:dd:ee:ff' -> 'aa_bb_cc_dd_ee_ff' (the form used in client ids and in devices/p2p/<id>). */
export function macToTopicId(mac: string): string {
  return normalizeMac(mac).replaceAll(':', '_');
}

/** True if `uuid` is a textual UUID (8-4-4-4-12 hex digits, either case). */
export function isUuid(uuid: unknown): uuid is string {
  return typeof uuid === 'string' && UUID.test(uuid);
}

/** True if `group` is a valid group name (without the "GID_" prefix). */
export function isGroup(group: unknown): group is string {
  return typeof group === 'string' && GROUP.test(group);
}

/** `GID_<group>@@@<mac_underscored>@@@<uuid>`. Throws a coded error naming the bad part. */
export function buildClientId(parts: { group: string; mac: string; uuid: string }): string {
  const { group, mac, uuid } = parts;
  if (!isGroup(group)) {
    throw rangeError('ERR_INVALID_GROUP', `group: expected 1-64 characters of [A-Za-z0-9_.-] (without the "GID_" prefix), got ${typeof group === 'string' ? shown(group) : describe(group)}`);
  }
  if (!isUuid(uuid)) {
    throw rangeError('ERR_INVALID_UUID', `uuid: expected a UUID like "0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d", got ${typeof uuid === 'string' ? shown(uuid) : describe(uuid)}`);
  }
  return `${GROUP_PREFIX}${group}${SEPARATOR}${macToTopicId(mac)}${SEPARATOR}${uuid}`;
}

/** Parses a client id, returning the reason when it is not one of the accepted forms (see top of file). */
export function parseClientIdDetailed(clientId: unknown): ClientIdParseResult {
  if (typeof clientId !== 'string') return { ok: false, reason: `client id must be a string, got ${describe(clientId)}` };
  if (clientId.length === 0) return { ok: false, reason: 'client id is empty' };
  if (clientId.length > MAX_CLIENT_ID_LENGTH) return { ok: false, reason: `client id is ${clientId.length} characters long (max ${MAX_CLIENT_ID_LENGTH})` };
  const parts = clientId.split(SEPARATOR);
  if (parts.length < 2 || parts.length > 3) {
    return { ok: false, reason: `client id must be GID_<group>@@@<mac>@@@<uuid> or GID_<group>@@@<mac>, got ${parts.length} part(s) in ${shown(clientId)}` };
  }
  const [groupPart, macPart, uuidPart] = parts as [string, string, string | undefined];
  if (!groupPart.startsWith(GROUP_PREFIX)) return { ok: false, reason: `group part must start with "${GROUP_PREFIX}", got ${shown(groupPart)}` };
  const group = groupPart.slice(GROUP_PREFIX.length);
  if (!GROUP.test(group)) return { ok: false, reason: `group after "${GROUP_PREFIX}" must be 1-64 characters of [A-Za-z0-9_.-], got ${shown(group)}` };
  if (!MAC_UNDERSCORE.test(macPart)) return { ok: false, reason: `MAC part must be six hex pairs joined by '_' like aa_bb_cc_dd_ee_ff, got ${shown(macPart)}` };
  if (uuidPart !== undefined && !UUID.test(uuidPart)) return { ok: false, reason: `uuid part must be a UUID (8-4-4-4-12 hex digits), got ${shown(uuidPart)}` };
  return { ok: true, value: { group, mac: macPart.replaceAll('_', ':').toLowerCase(), uuid: uuidPart } };
}

/** Parses a client id; null when it is not one of the accepted forms (use parseClientIdDetailed for the reason). */
export function parseClientId(clientId: string): ClientIdParts | null {
  const result = parseClientIdDetailed(clientId);
  return result.ok ? result.value : null;
}

export interface IssuedCredentials {
  username: string;
  password: string;
}

function sign(clientId: string, username: string, signatureKey: string): Buffer {
  return createHmac('sha256', signatureKey).update(`${clientId}|${username}`, 'utf8').digest();
}

function requireKey(signatureKey: unknown): string {
  if (typeof signatureKey !== 'string') throw typeError('ERR_INVALID_ARG_TYPE', `signatureKey: expected a non-empty string, got ${describe(signatureKey)}`);
  if (signatureKey.length === 0) throw rangeError('ERR_INVALID_SIGNATURE_KEY', 'signatureKey: must not be empty');
  return signatureKey;
}

/** username = base64({"ip": remoteIp}); password = base64(HMAC-SHA256(signatureKey, clientId + "|" + username)). */
export function issueCredentials(params: { clientId: string; remoteIp: string; signatureKey: string }): IssuedCredentials {
  const { clientId, remoteIp } = params;
  const signatureKey = requireKey(params.signatureKey);
  if (typeof clientId !== 'string' || clientId.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', `clientId: expected a non-empty string, got ${describe(clientId)}`);
  if (typeof remoteIp !== 'string') throw typeError('ERR_INVALID_ARG_TYPE', `remoteIp: expected a string, got ${describe(remoteIp)}`);
  const username = Buffer.from(JSON.stringify({ ip: remoteIp }), 'utf8').toString('base64');
  return { username, password: sign(clientId, username, signatureKey).toString('base64') };
}

/**
 * Credentials for open-auth mode (no signature secret): the same username, and a random password the
 * broker never checks. Random rather than empty or constant so nothing in the reply looks like, or can
 * be mistaken for, a signature; a later switch to signature mode rejects these until the device
 * fetches new ones from the OTA endpoint (which it does at every boot).
 */
export function issueOpenCredentials(params: { remoteIp: string }): IssuedCredentials {
  const username = Buffer.from(JSON.stringify({ ip: params.remoteIp }), 'utf8').toString('base64');
  return { username, password: randomBytes(32).toString('base64') };
}

/**
 * Decodes a username: strict base64 (canonical alphabet, padded) of a JSON object. Returns the object,
 * or null when the username is not of that form.
 */
export function decodeUsername(username: unknown): Record<string, unknown> | null {
  if (typeof username !== 'string' || username.length === 0 || username.length > MAX_USERNAME_LENGTH) return null;
  if (!BASE64.test(username)) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(username, 'base64').toString('utf8'));
  } catch {
    return null;
  }
  return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
}

/**
 * Checks credentials in constant time with respect to the secret: the expected password (44 ASCII
 * characters) is compared with crypto.timingSafeEqual against the presented one copied into a buffer
 * of the same length, so neither a wrong length nor a wrong prefix returns earlier. The username must
 * also be base64 of a JSON object. Every check runs before the results are combined.
 */
export function verifyCredentials(params: {
  clientId: string;
  username: string | undefined;
  password: string | Buffer | undefined;
  signatureKey: string;
}): boolean {
  const signatureKey = requireKey(params.signatureKey);
  const clientId = typeof params.clientId === 'string' ? params.clientId : '';
  const username = typeof params.username === 'string' ? params.username : '';
  const presented = typeof params.password === 'string'
    ? Buffer.from(params.password, 'utf8')
    : Buffer.isBuffer(params.password) ? params.password : Buffer.alloc(0);

  const expected = Buffer.from(sign(clientId, username, signatureKey).toString('base64'), 'ascii');
  if (expected.length !== PASSWORD_LENGTH) throw codedError('ERR_INTERNAL', 'HMAC-SHA256 digest has an unexpected length');
  const candidate = Buffer.alloc(PASSWORD_LENGTH);
  presented.copy(candidate, 0, 0, PASSWORD_LENGTH);

  const signatureMatches = timingSafeEqual(expected, candidate);
  const lengthMatches = presented.length === PASSWORD_LENGTH;
  const usernameValid = decodeUsername(username) !== null;
  const clientIdPresent = clientId.length > 0;
  return signatureMatches && lengthMatches && usernameValid && clientIdPresent;
}
