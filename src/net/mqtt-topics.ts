// The one rule for the topic devices publish to (config `publishTopic`), shared by the config
// schema, the broker's ACL and the OTA reply that tells devices the topic. It must be a topic a
// broker can match exactly: no wildcards, no NUL, not a '$' system topic, and not under the
// server -> device prefix (a device publishing there would reach other devices).
import { describe, rangeError, typeError } from '../native/errors.js';

/** Topic prefix of server -> device messages (existing gateways use it; the device ignores topics). */
export const DEVICE_TOPIC_PREFIX = 'devices/p2p/';

/** What is wrong with `topic` as a publish topic, or undefined when it is fine. */
export function publishTopicProblem(topic: string): string | undefined {
  if (topic.length === 0 || topic.length > 256) return `expected 1..256 characters, got ${topic.length}`;
  if (/[#+\u0000]/.test(topic) || topic.startsWith('$')) return `must not contain '#', '+' or NUL, nor start with '$', got ${JSON.stringify(topic)}`;
  if (topic.startsWith(DEVICE_TOPIC_PREFIX)) return `must not lie under ${DEVICE_TOPIC_PREFIX} (server -> device topics)`;
  return undefined;
}

/** The topic itself, or a coded TypeError / RangeError (ERR_INVALID_TOPIC) naming `name`. */
export function validatePublishTopic(topic: unknown, name = 'publishTopic'): string {
  if (typeof topic !== 'string') throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected a string, got ${describe(topic)}`);
  const problem = publishTopicProblem(topic);
  if (problem) throw rangeError('ERR_INVALID_TOPIC', `${name}: ${problem}`);
  return topic;
}
