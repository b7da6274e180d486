import { native } from './addon.js';
import { describe, expectInteger, expectOneOf, expectOptions, rejectUnknownKeys, typeError } from './errors.js';

export interface ResamplerOptions {
  /** Hz, e.g. 16000 */
  inputRate: number;
  /** Hz, e.g. 48000 */
  outputRate: number;
}

/**
 * Streaming mono resampler (polyphase windowed-sinc) for 8/16/24/48 kHz in any direction and other
 * small rational ratios. Output does not depend on how the input is chunked. `delay` is the group
 * delay in output samples; `flush()` emits the tail at end of stream and resets the state.
 */
export class Resampler {
  readonly inputRate: number;
  readonly outputRate: number;
  #impl: InstanceType<typeof native.NativeResampler>;

  constructor(options: ResamplerOptions) {
    const o = expectOptions('options', options);
    rejectUnknownKeys('Resampler options', o, ['inputRate', 'outputRate']);
    this.inputRate = expectInteger('options.inputRate', o.inputRate, 1, 384000);
    this.outputRate = expectInteger('options.outputRate', o.outputRate, 1, 384000);
    this.#impl = new native.NativeResampler(this.inputRate, this.outputRate);
  }

  /** Resamples the next chunk of the stream (Int16Array in -> Int16Array out; Float32Array -> Float32Array). */
  process(input: Int16Array): Int16Array;
  process(input: Float32Array): Float32Array;
  process(input: Int16Array | Float32Array): Int16Array | Float32Array {
    if (!(input instanceof Int16Array) && !(input instanceof Float32Array)) {
      throw typeError('ERR_INVALID_ARG_TYPE', `input: expected Int16Array or Float32Array, got ${describe(input)}`);
    }
    return this.#impl.process(input);
  }

  /** End of stream: the remaining output samples (Int16 by default). Resets the resampler. */
  flush(): Int16Array;
  flush(format: 'f32'): Float32Array;
  flush(format?: 'f32'): Int16Array | Float32Array {
    if (format !== undefined) expectOneOf('format', format, ['f32'] as const);
    return this.#impl.flush(format === 'f32');
  }

  reset(): void {
    this.#impl.reset();
  }

  /** Group delay of the filter, in output samples. */
  get delay(): number {
    return this.#impl.delay;
  }

  close(): void {
    this.#impl.close();
  }
}
