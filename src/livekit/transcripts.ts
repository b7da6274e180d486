// `lk.transcription` text streams → device `stt` / `tts sentence_start`.
// LiveKit Agents publish two kinds (agents room_io): the user's speech as one stream per update,
// each carrying the full text so far and `lk.transcription_final` = "true" on the last one; the
// agent's speech as one delta stream per segment, text appended as it is spoken. The user's are
// attributed to the user's participant and microphone track (`lk.transcribed_track_id`).
// The device shows one sentence at a time (sentence_start), so agent deltas are cut at sentence
// boundaries as they arrive rather than sent once the whole reply is over.
import type { TextStreamReader } from '@livekit/rtc-node';
import { ATTR_TRANSCRIBED_TRACK_ID, ATTR_TRANSCRIPTION_FINAL } from './conventions.js';

// A sentence ends at CJK terminators at once, and at ASCII ones when followed by whitespace
// (so "3.5" or "e.g." mid-stream do not split before the next delta shows what follows).
const BOUNDARY = /[。！？；…]+["”’)）\]]*|[.!?;]+["”’)\]]*(?=\s)/g;

export class SentenceSplitter {
  #buf = '';

  push(delta: string): string[] {
    this.#buf += delta;
    const out: string[] = [];
    let last = 0;
    BOUNDARY.lastIndex = 0;
    for (let m = BOUNDARY.exec(this.#buf); m; m = BOUNDARY.exec(this.#buf)) {
      const end = m.index + m[0].length;
      const s = this.#buf.slice(last, end).trim();
      if (s) out.push(s);
      last = end;
    }
    this.#buf = this.#buf.slice(last);
    return out;
  }

  flush(): string[] {
    const s = this.#buf.trim();
    this.#buf = '';
    return s ? [s] : [];
  }
}

export interface TranscriptTarget {
  deviceIdentity: string;
  /** Sid of the device's microphone track (user transcripts name it). */
  micTrackSid(): string | undefined;
  emit(t: { role: 'user' | 'agent'; text: string; final: boolean }): void;
}

export function transcriptRole(attributes: Record<string, string> | undefined, senderIdentity: string, target: Pick<TranscriptTarget, 'deviceIdentity' | 'micTrackSid'>): 'user' | 'agent' {
  const track = attributes?.[ATTR_TRANSCRIBED_TRACK_ID];
  const mic = target.micTrackSid();
  if (track && mic && track === mic) return 'user';
  return senderIdentity === target.deviceIdentity ? 'user' : 'agent';
}

/** Reads one lk.transcription stream to its end and emits what the device should show. */
export async function readTranscription(reader: TextStreamReader, senderIdentity: string, target: TranscriptTarget): Promise<void> {
  const attrs = reader.info.attributes ?? {};
  const role = transcriptRole(attrs, senderIdentity, target);
  if (role === 'user') {
    const text = (await reader.readAll()).trim();
    // Interim updates (final "false") are superseded by the final one; the device shows only that.
    if (text && attrs[ATTR_TRANSCRIPTION_FINAL] !== 'false') target.emit({ role, text, final: true });
    return;
  }
  const splitter = new SentenceSplitter();
  for await (const chunk of reader) {
    for (const s of splitter.push(chunk)) target.emit({ role, text: s, final: true });
  }
  for (const s of splitter.flush()) target.emit({ role, text: s, final: true });
}
