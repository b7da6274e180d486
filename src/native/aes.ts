import { native } from './addon.js';
import { expectBytes, rangeError } from './errors.js';

/**
 * AES-128-CTR with one OpenSSL EVP context per instance (the key schedule is computed once; each
 * call only resets the IV). Byte-identical to node:crypto 'aes-128-ctr'; the 128-bit counter wraps.
 */
export class AesCtr {
  #impl: InstanceType<typeof native.NativeAesCtr>;

  constructor(key: Uint8Array) {
    this.#impl = new native.NativeAesCtr(expectBytes('key', key, 16));
  }

  /**
   * Encrypts or decrypts `data` with the counter starting at `iv`. Without `output` a new Uint8Array
   * is returned; `output` may be `data` itself (in place) or a separate buffer of at least data.length.
   */
  crypt(iv: Uint8Array, data: Uint8Array, output?: Uint8Array): Uint8Array {
    expectBytes('iv', iv, 16);
    expectBytes('data', data);
    let out: Uint8Array;
    if (output === undefined) {
      out = new Uint8Array(data.length);
    } else {
      out = expectBytes('output', output);
      if (out.length < data.length) {
        throw rangeError('ERR_OUT_OF_RANGE', `output: expected at least ${data.length} bytes, got ${out.length}`);
      }
    }
    this.#impl.crypt(iv, data, out);
    return out;
  }

  close(): void {
    this.#impl.close();
  }
}

/** Version of the OpenSSL inside this Node.js binary that the addon uses. */
export function opensslVersion(): string {
  return native.opensslVersion();
}
