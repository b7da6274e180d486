// Device identity and credentials. Expected values are computed here, independently, with
// node:crypto and Buffer from the formulas of PROTOCOL.md §1 — never by calling the code under test.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  buildClientId, decodeUsername, issueCredentials, issueOpenCredentials, macToTopicId, normalizeMac,
  parseClientId, parseClientIdDetailed, verifyCredentials,
} from '../src/device/credentials.js';
import { expectCoded } from './helpers/errors.js';

const KEY = 'a-signature-secret';
const UUID = '792bf676-bed1-4fae-8a7d-3bbc4f5d3e92';
const CLIENT_ID = `GID_test@@@1c_db_d4_75_88_cc@@@${UUID}`;

function expectedUsername(ip: string): string {
  return Buffer.from(`{"ip":"${ip}"}`, 'utf8').toString('base64');
}

function expectedPassword(clientId: string, username: string, key: string): string {
  return createHmac('sha256', Buffer.from(key, 'utf8')).update(Buffer.from(`${clientId}|${username}`, 'utf8')).digest('base64');
}

describe('MAC addresses', () => {
  it('maps to the underscored topic id, lower-cased', () => {
    expect(macToTopicId('aa:bb:cc:dd:ee:ff')).toBe('aa_bb_cc_dd_ee_ff');
    expect(macToTopicId('1C:DB:D4:75:88:CC')).toBe('1c_db_d4_75_88_cc');
    expect(normalizeMac('1C:db:D4:75:88:cc')).toBe('1c:db:d4:75:88:cc');
  });

  it('rejects anything but six hex pairs separated by colons', () => {
    for (const bad of ['aa:bb:cc:dd:ee', 'aa:bb:cc:dd:ee:ff:00', 'aa-bb-cc-dd-ee-ff', 'aa_bb_cc_dd_ee_ff', 'gg:bb:cc:dd:ee:ff', 'aabbccddeeff', ' aa:bb:cc:dd:ee:ff', 'a:bb:cc:dd:ee:ff', '']) {
      expectCoded(() => macToTopicId(bad), RangeError, 'ERR_INVALID_MAC', 'mac');
    }
    expectCoded(() => macToTopicId(42 as unknown as string), TypeError, 'ERR_INVALID_ARG_TYPE', 'mac');
  });
});

describe('client ids', () => {
  it('builds the canonical GID_<group>@@@<mac_>@@@<uuid> form', () => {
    expect(buildClientId({ group: 'test', mac: '1C:DB:D4:75:88:CC', uuid: UUID })).toBe(CLIENT_ID);
  });

  it('parses the canonical form and the legacy form without uuid', () => {
    expect(parseClientId(CLIENT_ID)).toEqual({ group: 'test', mac: '1c:db:d4:75:88:cc', uuid: UUID });
    expect(parseClientId('GID_test@@@1C_DB_D4_75_88_CC@@@792BF676-BED1-4FAE-8A7D-3BBC4F5D3E92')).toEqual({
      group: 'test', mac: '1c:db:d4:75:88:cc', uuid: '792BF676-BED1-4FAE-8A7D-3BBC4F5D3E92',
    });
    expect(parseClientId('GID_test@@@1c_db_d4_75_88_cc')).toEqual({ group: 'test', mac: '1c:db:d4:75:88:cc', uuid: undefined });
    expect(parseClientId('GID_my.group-1_x@@@1c_db_d4_75_88_cc')?.group).toBe('my.group-1_x');
  });

  it('round-trips through build and parse', () => {
    const parts = { group: 'xiaozhi', mac: '02:00:00:00:00:01', uuid: '00000000-0000-4000-8000-000000000000' };
    expect(parseClientId(buildClientId(parts))).toEqual(parts);
  });

  it('rejects every other form with a reason', () => {
    const cases: Array<[unknown, string]> = [
      ['', 'empty'],
      ['device-1', 'part(s)'],
      ['GID_test@@@1c_db_d4_75_88_cc@@@' + UUID + '@@@extra', '4 part(s)'],
      ['test@@@1c_db_d4_75_88_cc@@@' + UUID, 'must start with "GID_"'],
      ['GID_@@@1c_db_d4_75_88_cc@@@' + UUID, 'group after "GID_"'],
      ['GID_te st@@@1c_db_d4_75_88_cc@@@' + UUID, 'group after "GID_"'],
      ['GID_test@@@1c:db:d4:75:88:cc@@@' + UUID, 'MAC part'],
      ['GID_test@@@1c-db-d4-75-88-cc@@@' + UUID, 'MAC part'],
      ['GID_test@@@1c_db_d4_75_88@@@' + UUID, 'MAC part'],
      ['GID_test@@@1c_db_d4_75_88_cc@@@', 'uuid part'],
      ['GID_test@@@1c_db_d4_75_88_cc@@@not-a-uuid', 'uuid part'],
      ['GID_' + 'g'.repeat(300) + '@@@1c_db_d4_75_88_cc', 'characters long'],
      [undefined, 'must be a string'],
    ];
    for (const [input, reason] of cases) {
      const r = parseClientIdDetailed(input);
      expect(r.ok, String(input)).toBe(false);
      if (!r.ok) expect(r.reason, String(input)).toContain(reason);
      if (typeof input === 'string') expect(parseClientId(input)).toBeNull();
    }
  });

  it('refuses to build from bad parts, naming the part', () => {
    expectCoded(() => buildClientId({ group: 'a b', mac: '02:00:00:00:00:01', uuid: UUID }), RangeError, 'ERR_INVALID_GROUP', 'group');
    expectCoded(() => buildClientId({ group: 'x', mac: '02:00:00:00:00:01', uuid: 'nope' }), RangeError, 'ERR_INVALID_UUID', 'uuid');
    expectCoded(() => buildClientId({ group: 'x', mac: '02-00-00-00-00-01', uuid: UUID }), RangeError, 'ERR_INVALID_MAC', 'mac');
  });
});

describe('credentials', () => {
  it('issues username = base64({"ip":...}) and password = base64(HMAC-SHA256(key, client_id|username))', () => {
    const { username, password } = issueCredentials({ clientId: CLIENT_ID, remoteIp: '134.231.56.89', signatureKey: KEY });
    expect(username).toBe('eyJpcCI6IjEzNC4yMzEuNTYuODkifQ==');
    expect(username).toBe(expectedUsername('134.231.56.89'));
    expect(password).toBe(expectedPassword(CLIENT_ID, username, KEY));
    expect(Buffer.from(password, 'base64')).toHaveLength(32);
  });

  it('matches a fixed vector computed with Python\'s hmac module', () => {
    // python3: base64(hmac.new(b'a-signature-secret', (cid + '|' + username).encode(), sha256).digest())
    const { username, password } = issueCredentials({ clientId: CLIENT_ID, remoteIp: '134.231.56.89', signatureKey: KEY });
    expect(username).toBe('eyJpcCI6IjEzNC4yMzEuNTYuODkifQ==');
    expect(password).toBe('Xef+WDKQb3i2IBz2ltFTrAOyHLJt3OMZSNG7HIiJbVE=');
  });

  it('verifies issued credentials, as string or Buffer password', () => {
    const { username, password } = issueCredentials({ clientId: CLIENT_ID, remoteIp: '10.1.2.3', signatureKey: KEY });
    expect(verifyCredentials({ clientId: CLIENT_ID, username, password, signatureKey: KEY })).toBe(true);
    expect(verifyCredentials({ clientId: CLIENT_ID, username, password: Buffer.from(password), signatureKey: KEY })).toBe(true);
    // Credentials minted by another implementation of the same formula verify too.
    const u = expectedUsername('1.2.3.4');
    expect(verifyCredentials({ clientId: CLIENT_ID, username: u, password: expectedPassword(CLIENT_ID, u, KEY), signatureKey: KEY })).toBe(true);
  });

  it('rejects anything that differs', () => {
    const { username, password } = issueCredentials({ clientId: CLIENT_ID, remoteIp: '10.1.2.3', signatureKey: KEY });
    const otherClient = CLIENT_ID.replace('1c_db', '1c_dc');
    const otherUser = expectedUsername('10.1.2.4');
    const flipped = (password[0] === 'A' ? 'B' : 'A') + password.slice(1);
    const cases: Array<[string, Parameters<typeof verifyCredentials>[0]]> = [
      ['wrong key', { clientId: CLIENT_ID, username, password, signatureKey: KEY + 'x' }],
      ['other client id', { clientId: otherClient, username, password, signatureKey: KEY }],
      ['other username', { clientId: CLIENT_ID, username: otherUser, password, signatureKey: KEY }],
      ['first character flipped', { clientId: CLIENT_ID, username, password: flipped, signatureKey: KEY }],
      ['truncated', { clientId: CLIENT_ID, username, password: password.slice(0, 43), signatureKey: KEY }],
      ['right prefix plus extra', { clientId: CLIENT_ID, username, password: password + 'A', signatureKey: KEY }],
      ['padding removed', { clientId: CLIENT_ID, username, password: password.replace(/=+$/, ''), signatureKey: KEY }],
      ['empty', { clientId: CLIENT_ID, username, password: '', signatureKey: KEY }],
      ['missing', { clientId: CLIENT_ID, username, password: undefined, signatureKey: KEY }],
      ['raw digest bytes instead of base64', { clientId: CLIENT_ID, username, password: Buffer.from(password, 'base64'), signatureKey: KEY }],
    ];
    for (const [what, params] of cases) expect(verifyCredentials(params), what).toBe(false);
  });

  it('requires the username to be base64 of a JSON object, even when the signature matches', () => {
    for (const username of ['not base64!', Buffer.from('not json').toString('base64'), Buffer.from('[1,2]').toString('base64'), Buffer.from('null').toString('base64'), 'eyJpcCI6IjEifQ', '']) {
      const password = expectedPassword(CLIENT_ID, username, KEY);
      expect(verifyCredentials({ clientId: CLIENT_ID, username, password, signatureKey: KEY }), JSON.stringify(username)).toBe(false);
    }
    expect(decodeUsername(expectedUsername('1.2.3.4'))).toEqual({ ip: '1.2.3.4' });
    expect(decodeUsername(Buffer.from('{"ip":"1.2.3.4","extra":1}').toString('base64'))).toEqual({ ip: '1.2.3.4', extra: 1 });
  });

  it('never treats a missing key as valid', () => {
    expectCoded(() => verifyCredentials({ clientId: CLIENT_ID, username: 'e30=', password: 'x', signatureKey: '' }), RangeError, 'ERR_INVALID_SIGNATURE_KEY', 'signatureKey');
    expectCoded(() => issueCredentials({ clientId: CLIENT_ID, remoteIp: '1.2.3.4', signatureKey: undefined as unknown as string }), TypeError, 'ERR_INVALID_ARG_TYPE', 'signatureKey');
  });

  it('open-mode credentials carry the same username and an unpredictable password', () => {
    const a = issueOpenCredentials({ remoteIp: '1.2.3.4' });
    const b = issueOpenCredentials({ remoteIp: '1.2.3.4' });
    expect(a.username).toBe(expectedUsername('1.2.3.4'));
    expect(Buffer.from(a.password, 'base64')).toHaveLength(32);
    expect(a.password).not.toBe(b.password);
  });
});
