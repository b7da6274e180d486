// One simulated stock device: OTA check, MQTT connect with the returned credentials (subscribing to
// nothing), hello, a connected UDP socket with the nonce-derived header/IV and sequence rules, and
// the Application state machine (idle / connecting / listening / speaking) driving conversation
// turns. What the firmware does is mirrored step by step; see the comments naming its functions.
// This file is the firmware's state machine; around it: mqtt-link.ts and udp-channel.ts (transport),
// microphone.ts (the mic's frames on the simulated clock), user-script.ts (what the user does) and
// mcp-tools.ts (the device's MCP server).
import { AesCtr } from '../native/index.js';
import { FRAME_MS, type UplinkClip } from './audio.js';
import type { Scheduler, TimerHandle } from './clock.js';
import type { DecodeService } from './decoder.js';
import {
  abortMessage,
  applyOtaReply,
  goodbyeMessage,
  helloMessage,
  listenStartMessage,
  listenStopMessage,
  mcpMessage,
  mqttSettingsFrom,
  parseHelloReply,
  type FirmwareRules,
  type ListeningMode,
  type MqttSettings,
} from './firmware.js';
import { mcpReply } from './mcp-tools.js';
import { Microphone } from './microphone.js';
import { MqttLink } from './mqtt-link.js';
import { otaRequest, type DeviceIdentity } from './ota.js';
import { AudioSink } from './sink.js';
import { DeviceStats, type FailureKind } from './stats.js';
import { UdpChannel, UplinkPacketizer } from './udp-channel.js';
import { UserScript } from './user-script.js';

export type DeviceState = 'off' | 'booting' | 'idle' | 'connecting' | 'listening' | 'speaking' | 'stopped';

export interface SimDeviceOptions {
  index: number;
  otaUrl: string;
  identity: DeviceIdentity;
  rules: FirmwareRules;
  mode: ListeningMode;
  /** Speech per turn (ms). */
  speakMs: number;
  /** Pause between turns (ms): idle in manual mode, streamed silence in auto/realtime mode. */
  pauseMs: number;
  /** Every N-th turn the user barges in while the reply plays (0 = never). */
  abortEvery: number;
  /** Barge-in this long after tts start (ms). */
  abortAfterMs: number;
  /** Close the channel (goodbye) and open a new session after this many turns (0 = never). */
  turnsPerSession: number;
  /** listen stop → tts start allowed (ms). */
  replyTimeoutMs: number;
  /** Silence after the last reply audio before a missing tts stop counts as a failure (ms). */
  ttsStopTimeoutMs: number;
  /** Start-up offset into the uplink clip (frames), so devices do not say the same thing in unison. */
  clipOffset: number;
  insecure: boolean;
  decode: boolean;
  /**
   * Source address for this device's OTA, MQTT and UDP sockets (each real device has its own IP;
   * gateways rate-limit and bind UDP per IP). Undefined: the OS chooses.
   */
  localAddress?: string;
  log?: (line: string) => void;
}

export interface DeviceEnv {
  scheduler: Scheduler;
  clip: UplinkClip;
  decoder: DecodeService;
}

const HELLO_TIMEOUT_MS = 10_000;
const CHANNEL_TIMEOUT_MS = 120_000;
/** After the last tts stop, how long a stopping device still listens for stray audio. */
const SETTLE_MS = 500;

export class SimDevice {
  readonly options: SimDeviceOptions;
  readonly stats = new DeviceStats();
  readonly sink: AudioSink;
  readonly env: DeviceEnv;
  state: DeviceState = 'off';
  /** Why the device is not running a conversation right now (shown in the report on failure). */
  lastError = '';

  #settings = new Map<string, string | number>();
  #mqttSettings: MqttSettings | null = null;
  #udp: UdpChannel | null = null;
  #udpServer = '';
  #udpPort = 0;
  #cipher: AesCtr | null = null;
  #uplink: UplinkPacketizer | null = null;
  #sessionId = '';
  #errorOccurred = false;
  #lastIncoming = 0;
  #helloWaiter: ((ok: boolean) => void) | null = null;
  #helloInvalid: 'invalid' | 'crash' | null = null;
  #listeningMode: ListeningMode;
  readonly #mic: Microphone;
  readonly #link: MqttLink;
  #turnId = 0;
  #turnsThisSession = 0;
  #turnTimer: TimerHandle | null = null;
  #nextTimer: TimerHandle | null = null;
  #abortTimer: TimerHandle | null = null;
  #epoch = 0;
  #draining = false;
  #awaitingReply = false;
  /** Consecutive failed MQTT connects: the retry backs off (1 s, 2 s, ... 30 s). */
  #mqttFailures = 0;
  #stopped: Promise<void>;
  #resolveStopped!: () => void;
  #aec: boolean;
  readonly #user: UserScript;

  constructor(options: SimDeviceOptions, env: DeviceEnv) {
    this.options = options;
    this.env = env;
    this.#user = new UserScript(options, options.index);
    this.#listeningMode = options.mode;
    this.#aec = options.mode === 'realtime';
    this.#mic = new Microphone(env.clip, env.scheduler, options.clipOffset, {
      frame: (payload, envelope, index) => {
        this.#sendAudio(payload);
        this.sink.noteSent(envelope, index);
      },
      endOfSpeech: () => this.#endOfSpeech(),
      released: () => this.#releaseButton(),
    });
    this.sink = new AudioSink({
      rules: options.rules,
      decoder: env.decoder,
      device: options.index,
      stats: this.stats,
      recordTimestamps: this.#aec,
      decode: options.decode,
    });
    this.#link = new MqttLink({
      insecure: options.insecure,
      localAddress: (host) => this.#localFor(host),
      onMessage: (payload) => this.#onMqttMessage(payload),
      onLost: () => {
        if (this.state !== 'stopped') this.#onMqttLost();
      },
    });
    this.#stopped = new Promise((r) => (this.#resolveStopped = r));
  }

  get now(): number {
    return this.env.scheduler.now();
  }

  get sessionId(): string {
    return this.#sessionId;
  }

  get mqttConnected(): boolean {
    return this.#link.connected;
  }

  get inSession(): boolean {
    return this.#udp !== null && !this.#errorOccurred;
  }

  #log(msg: string): void {
    this.options.log?.(`${(this.now / 1000).toFixed(3)} [dev ${this.options.index} ${this.options.identity.mac}] ${msg}`);
  }

  #fail(kind: FailureKind, detail: string): void {
    this.stats.failures[kind]++;
    this.lastError = `${kind}: ${detail}`;
    this.#log(`FAIL ${kind}: ${detail}`);
  }

  // ---- lifecycle ----------------------------------------------------------------------------------

  /** Power on: OTA, MQTT, then the first conversation. */
  start(): void {
    void this.#boot();
  }

  /** Resolves when the device has shut down (after drain()/kill()). */
  stopped(): Promise<void> {
    return this.#stopped;
  }

  /**
   * End of the run: finish the current turn (reply included), then goodbye and power off.
   * Devices not in a conversation power off at once.
   */
  drain(): void {
    if (this.#draining) return;
    this.#draining = true;
    // Not in a conversation (a scheduled one has not begun): stop now. An in-flight boot or channel
    // opening ends at its next step; a turn in progress runs to its tts stop.
    if (this.state === 'off' || (this.state === 'idle' && !this.#awaitingReply)) this.#powerOff();
    // Realtime, between utterances (microphone streaming silence, no reply pending): stop too.
    else if (this.state === 'listening' && this.#mic.betweenUtterances && !this.#awaitingReply) this.#powerOff();
  }

  /** Immediate power-off (drain took too long). */
  kill(): void {
    this.#draining = true;
    this.#powerOff();
  }

  #powerOff(): void {
    if (this.state === 'stopped') return;
    this.#epoch++;
    this.#mic.stop();
    for (const t of [this.#turnTimer, this.#nextTimer, this.#abortTimer]) this.env.scheduler.cancel(t);
    const now = this.now;
    if (this.#udp) this.#closeAudioChannel(true);
    this.sink.close(now);
    this.#link.close(false);
    this.#cipher?.close();
    this.#cipher = null;
    this.env.decoder.release(this.options.index);
    this.state = 'stopped';
    this.#resolveStopped();
  }

  async #boot(): Promise<void> {
    const epoch = this.#epoch;
    this.state = 'booting';
    // Ota::CheckVersion with the firmware's retry (10 s doubling) shortened for a simulator.
    let reply: unknown;
    for (let attempt = 0; ; attempt++) {
      this.stats.otaRequests++;
      try {
        const res = await otaRequest(this.options.otaUrl, this.options.identity, 10_000, this.options.insecure, this.#localFor(new URL(this.options.otaUrl).hostname));
        if (epoch !== this.#epoch) return;
        if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
        try {
          reply = JSON.parse(res.body);
        } catch {
          throw new Error(`reply is not JSON: ${res.body.slice(0, 200)}`);
        }
        break;
      } catch (err) {
        if (epoch !== this.#epoch) return;
        if (attempt >= 2 || this.#draining) {
          this.#fail('ota', (err as Error).message);
          this.#powerOff();
          return;
        }
        await this.#sleep(1000 * 2 ** attempt);
        if (epoch !== this.#epoch) return;
      }
    }
    const outcome = applyOtaReply(reply, this.#settings);
    if (outcome.activationRequired) {
      this.#fail('activation', 'the OTA reply carries an activation code/challenge');
      this.#powerOff();
      return;
    }
    if (!outcome.hasMqtt) this.#log('OTA reply has no mqtt section: using stored settings');
    if (outcome.skippedKeys.length) this.#log(`mqtt members not stored: ${outcome.skippedKeys.join(', ')}`);
    try {
      this.#mqttSettings = mqttSettingsFrom(this.#settings);
    } catch (err) {
      this.#fail('mqtt-connect', (err as Error).message);
      this.#powerOff();
      return;
    }
    // MqttProtocol::Start at activation done; failure is reported, the device idles.
    const ok = await this.#startMqtt();
    if (epoch !== this.#epoch) return;
    this.state = 'idle';
    if (this.#draining) {
      this.#powerOff();
      return;
    }
    if (!ok) {
      this.#scheduleConversation(this.#retryDelay());
      return;
    }
    this.#scheduleConversation(0);
  }

  /** The device's own source address, used only towards loopback destinations (127/8 all belongs to lo). */
  #localFor(host: string): string | undefined {
    const local = this.options.localAddress;
    if (!local) return undefined;
    return host === 'localhost' || /^127\.\d+\.\d+\.\d+$/.test(host) ? local : undefined;
  }

  /** After a failed connection: the user tries again later, later each time. */
  #retryDelay(): number {
    return Math.min(30_000, 1000 * 2 ** Math.max(0, this.#mqttFailures - 1));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => this.env.scheduler.after(ms, r));
  }

  // ---- MQTT ---------------------------------------------------------------------------------------

  /** MqttProtocol::StartMqttClient; a failure counts towards the retry back-off. */
  async #startMqtt(): Promise<boolean> {
    const s = this.#mqttSettings;
    if (!s) return false;
    this.stats.mqttConnects++;
    const epoch = this.#epoch;
    const r = await this.#link.connect(s);
    if (epoch !== this.#epoch) return false; // powered off meanwhile: not the gateway's fault
    if (!r.ok) {
      this.#mqttFailures++;
      this.#fail('mqtt-connect', r.why);
      return false;
    }
    this.#mqttFailures = 0;
    return true;
  }

  /** The broker dropped us. The firmware keeps UDP open but every SendText now fails (→ idle). */
  #onMqttLost(): void {
    const inConversation = this.state === 'listening' || this.state === 'speaking' || this.#awaitingReply;
    if (inConversation || this.#udp || this.state === 'connecting') {
      this.#fail('mqtt-disconnect', `MQTT connection lost in state ${this.state}`);
    }
    // Every later SendText fails: the channel counts as broken and the next conversation starts over.
    this.#errorOccurred = true;
    if (this.#helloWaiter) this.#helloWaiter(false);
    if (inConversation) {
      this.#endConversationAbruptly();
      if (this.#draining) this.#powerOff();
      else this.#scheduleConversation(Math.max(1000, this.options.pauseMs));
    }
  }

  #sendText(text: string): boolean {
    const topic = this.#mqttSettings?.publishTopic ?? '';
    if (!topic || !this.#link.connected) return false;
    if (this.options.log) this.#log(`>> ${text}  (state ${this.state})`);
    return this.#link.publish(topic, text);
  }

  #onMqttMessage(payload: Buffer): void {
    let root: unknown;
    try {
      root = JSON.parse(payload.toString('utf8'));
    } catch {
      this.stats.messages.unparsable++;
      return;
    }
    if (typeof root !== 'object' || root === null || Array.isArray(root)) {
      this.stats.messages.unparsable++;
      return;
    }
    const msg = root as Record<string, unknown>;
    if (typeof msg.type !== 'string') {
      this.stats.messages.unparsable++;
      return;
    }
    const now = this.now;
    if (this.options.log) this.#log(`<< ${payload.length > 300 ? payload.toString('utf8', 0, 300) + '…' : payload.toString('utf8')}  (state ${this.state})`);
    switch (msg.type) {
      case 'hello':
        this.#onServerHello(msg);
        break;
      case 'goodbye':
        this.#onServerGoodbye(msg);
        break;
      case 'tts':
        this.#onTts(msg, now);
        break;
      case 'stt':
        this.stats.messages.stt++;
        break;
      case 'llm':
        this.stats.messages.llm++;
        break;
      case 'mcp':
        this.stats.messages.mcp++;
        if (typeof msg.payload === 'object' && msg.payload !== null && !Array.isArray(msg.payload)) {
          this.#onMcp(msg.payload as Record<string, unknown>);
        }
        break;
      case 'system':
        this.stats.messages.system++;
        if (msg.command === 'reboot') this.#reboot();
        break;
      case 'alert':
        this.stats.messages.alert++;
        break;
      default:
        this.stats.messages.unknown++;
    }
    this.#lastIncoming = now;
  }

  // ---- audio channel ------------------------------------------------------------------------------

  /** ParseServerHello: installs key/nonce and resets both sequences, whether or not we asked. */
  #onServerHello(msg: Record<string, unknown>): void {
    const reply = parseHelloReply(this.options.rules, msg);
    if (!reply.ok) {
      this.#helloInvalid = reply.crash ? 'crash' : 'invalid';
      this.#log(`hello reply ignored: ${reply.reason}`);
      if (reply.crash) {
        this.#fail('firmware-crash', reply.reason);
        this.#helloWaiter?.(false);
        this.#reboot();
      }
      return;
    }
    if (!this.#helloWaiter) this.stats.messages.unsolicitedHello++;
    if (reply.sessionId !== undefined) this.#sessionId = reply.sessionId;
    this.#udpServer = reply.udp.server;
    this.#udpPort = reply.udp.port;
    this.#cipher?.close();
    this.#cipher = new AesCtr(reply.udp.key);
    this.#uplink = new UplinkPacketizer(reply.udp.nonce, this.#cipher);
    if (this.#udp) {
      // Already open: the socket stays connected where it was; only key and counters change.
      this.sink.rekey(this.#cipher, reply.sampleRate, reply.frameDuration);
    } else {
      this.#pendingAudioParams = { sampleRate: reply.sampleRate, frameDuration: reply.frameDuration };
    }
    this.#helloWaiter?.(true);
  }

  #pendingAudioParams: { sampleRate: number | undefined; frameDuration: number | undefined } | null = null;

  /** MqttProtocol::OpenAudioChannel. */
  async #openAudioChannel(): Promise<boolean> {
    const epoch = this.#epoch;
    if (!this.#link.connected) {
      if (!(await this.#startMqtt())) return false;
      if (epoch !== this.#epoch) return false;
    }
    this.#errorOccurred = false;
    this.#sessionId = '';
    this.#helloInvalid = null;
    const replied = new Promise<boolean>((resolve) => {
      const timer = this.env.scheduler.after(HELLO_TIMEOUT_MS, () => {
        this.#helloWaiter = null;
        resolve(false);
      });
      this.#helloWaiter = (ok) => {
        this.env.scheduler.cancel(timer);
        this.#helloWaiter = null;
        resolve(ok);
      };
    });
    this.stats.helloSent++;
    if (!this.#sendText(helloMessage(this.options.rules, this.#aec))) {
      this.#helloWaiter?.(false);
      this.#fail('mqtt-connect', 'cannot publish hello (not connected or no publish_topic)');
      return false;
    }
    const ok = await replied;
    if (epoch !== this.#epoch) return false;
    if (!ok) {
      if (this.#helloInvalid === 'crash') return false;
      if (this.#helloInvalid === 'invalid') this.#fail('hello-invalid', 'the hello reply was ignored by the firmware (see --verbose)');
      else if (this.#link.connected) this.#fail('hello-timeout', `no hello reply within ${HELLO_TIMEOUT_MS / 1000} s`);
      return false;
    }
    this.stats.sessionsOpened++;
    this.#turnsThisSession = 0;
    // Udp::Connect to udp.server:udp.port: replies are accepted from exactly there.
    const channel = await UdpChannel.connect(this.#udpServer, this.#udpPort, this.#localFor(this.#udpServer), (msg, from) => {
      if (this.#udp !== from) return;
      this.#lastIncoming = this.now;
      this.sink.datagram(msg, this.now);
    });
    if (epoch !== this.#epoch) {
      if (typeof channel !== 'string') channel.close();
      return false;
    }
    if (typeof channel === 'string') {
      this.#fail('udp', channel);
      return false;
    }
    this.#udp = channel;
    const p = this.#pendingAudioParams;
    this.sink.openChannel(this.#cipher!, p?.sampleRate, p?.frameDuration);
    this.#pendingAudioParams = null;
    this.#lastIncoming = this.now;
    return true;
  }

  /** MqttProtocol::CloseAudioChannel(send_goodbye). */
  #closeAudioChannel(sendGoodbye: boolean): void {
    this.#udp?.close();
    this.#udp = null;
    if (sendGoodbye) this.#sendText(goodbyeMessage(this.#sessionId));
    this.sink.closeChannel(this.now);
  }

  #onServerGoodbye(msg: Record<string, unknown>): void {
    const sid = msg.session_id;
    const matches = this.options.rules.goodbyeNeedsSessionId
      ? typeof sid === 'string' && sid === this.#sessionId
      : sid === undefined || sid === null || sid === this.#sessionId;
    if (!matches) return;
    // Still waiting for the hello reply: nothing to close yet.
    if (!this.#udp && this.state === 'connecting') return;
    this.stats.sessionsClosedByServer++;
    this.#mic.stop();
    this.#awaitingReply = false;
    this.sink.leaveSpeaking(this.now);
    this.sink.finalizeTurn();
    this.#cancelTurnTimers();
    // v2.3+: no goodbye back (no ping-pong); older firmware always sent one.
    this.#closeAudioChannel(this.options.rules.answersServerGoodbye);
    this.state = 'idle';
    if (this.#draining) {
      this.#powerOff();
      return;
    }
    this.#scheduleConversation(this.#user.pauseMs());
  }

  #reboot(): void {
    this.stats.reboots++;
    if (this.#udp) this.#closeAudioChannel(true);
    this.#mic.stop();
    this.#cancelTurnTimers();
    this.env.scheduler.cancel(this.#nextTimer);
    this.sink.finalizeTurn();
    this.#link.close(true);
    this.#epoch++;
    this.state = 'off';
    if (this.#draining) {
      this.#powerOff();
      return;
    }
    // esp_restart + boot to Wi-Fi: a couple of seconds.
    this.env.scheduler.after(2000, () => {
      if (this.state === 'off' && !this.#draining) void this.#boot();
      else if (this.#draining) this.#powerOff();
    });
  }

  // ---- conversation -------------------------------------------------------------------------------

  #scheduleConversation(delayMs: number): void {
    this.env.scheduler.cancel(this.#nextTimer);
    this.#nextTimer = this.env.scheduler.after(delayMs, () => {
      this.#nextTimer = null;
      void this.#toggleChat();
    });
  }

  #channelOpen(): boolean {
    return this.#udp !== null && !this.#errorOccurred && this.now - this.#lastIncoming <= CHANNEL_TIMEOUT_MS;
  }

  /** Idle → (open the channel) → listening in the configured mode (HandleToggleChatEvent). */
  async #toggleChat(): Promise<void> {
    if (this.state !== 'idle' || this.#draining) {
      if (this.#draining && this.state === 'idle') this.#powerOff();
      return;
    }
    const epoch = this.#epoch;
    const mode = this.options.mode;
    if (this.#user.endsSession(this.#turnsThisSession) && this.#udp) {
      this.stats.sessionsClosedByDevice++;
      this.#closeAudioChannel(true);
    }
    if (!this.#channelOpen()) {
      if (this.#udp) this.#closeAudioChannel(false);
      this.state = 'connecting';
      const ok = await this.#openAudioChannel();
      if (epoch !== this.#epoch) return;
      if (!ok) {
        this.state = 'idle';
        if (this.#draining) this.#powerOff();
        else this.#scheduleConversation(this.#mqttFailures > 0 ? this.#retryDelay() : Math.max(1000, this.options.pauseMs));
        return;
      }
      if (this.#draining) {
        this.state = 'idle';
        this.#powerOff();
        return;
      }
    }
    this.#listeningMode = mode;
    this.#enterListening(0);
  }

  /** SetListeningMode → kDeviceStateListening → StartListeningAudio: listen start, then the mic. */
  #enterListening(silenceMs: number): void {
    this.state = 'listening';
    this.sink.finalizeTurn();
    this.#turnId++;
    this.#turnsThisSession++;
    this.stats.turnsStarted++;
    this.sink.beginTurn(this.#turnId);
    if (!this.#sendText(listenStartMessage(this.#sessionId, this.#listeningMode))) {
      this.#sendFailed();
      return;
    }
    this.#mic.start(Math.round(silenceMs / FRAME_MS), this.#user.speechFrames(), this.#listeningMode === 'realtime');
  }

  /**
   * Realtime mode: the user stopped talking but nothing is sent (no listen stop: the server's VAD
   * ends the utterance). The reply's latency clock starts here.
   */
  #endOfSpeech(): void {
    this.#awaitingReply = true;
    this.sink.listenStop(this.now);
    this.#armReplyTimeout('the end of speech');
  }

  /** Realtime mode: the next utterance into the running microphone (no new listen start). */
  #speakAgain(): void {
    if (!this.#mic.continuous || this.#draining || this.state !== 'listening') {
      if (this.#draining) this.#powerOff();
      return;
    }
    this.sink.finalizeTurn();
    this.#turnId++;
    this.#turnsThisSession++;
    this.stats.turnsStarted++;
    this.sink.beginTurn(this.#turnId);
    this.#mic.speakAgain(this.#user.speechFrames());
  }

  /** SendText failed: SetError → MAIN_EVENT_ERROR → idle; the channel counts as broken. */
  #sendFailed(): void {
    this.#errorOccurred = true;
    this.#endConversationAbruptly();
    if (this.#draining) this.#powerOff();
    else this.#scheduleConversation(Math.max(1000, this.options.pauseMs));
  }

  #endConversationAbruptly(): void {
    this.#awaitingReply = false;
    this.#mic.stop();
    this.#cancelTurnTimers();
    this.sink.leaveSpeaking(this.now);
    this.sink.finalizeTurn();
    this.state = 'idle';
  }

  /** MqttProtocol::SendAudio (the packet: UplinkPacketizer). */
  #sendAudio(opus: Buffer): void {
    const channel = this.#udp;
    const uplink = this.#uplink;
    if (!channel || !uplink) return;
    const ts = this.#aec ? this.sink.playback.takeUplinkTimestamp(this.now) : 0;
    const datagram = uplink.packet(opus, ts);
    this.stats.uplinkPackets++;
    this.stats.uplinkBytes += datagram.length;
    channel.send(datagram);
  }

  /** The user stops talking: HandleStopListeningEvent → listen stop, kDeviceStateIdle. */
  #releaseButton(): void {
    if (this.state !== 'listening') return;
    if (!this.#sendText(listenStopMessage(this.#sessionId))) {
      this.#sendFailed();
      return;
    }
    this.state = 'idle';
    this.#awaitingReply = true;
    this.sink.listenStop(this.now);
    this.#armReplyTimeout('listen stop');
  }

  #armReplyTimeout(from: string): void {
    this.#cancelTurnTimers();
    this.#turnTimer = this.env.scheduler.after(this.options.replyTimeoutMs, () => {
      this.#turnTimer = null;
      if (this.state === 'speaking') return;
      this.#awaitingReply = false;
      this.#fail('no-reply', `no tts start within ${this.options.replyTimeoutMs} ms of ${from}`);
      this.sink.leaveSpeaking(this.now);
      this.#nextTurn();
    });
  }

  #cancelTurnTimers(): void {
    this.env.scheduler.cancel(this.#turnTimer);
    this.env.scheduler.cancel(this.#abortTimer);
    this.#turnTimer = null;
    this.#abortTimer = null;
  }

  #onTts(msg: Record<string, unknown>, now: number): void {
    const state = msg.state;
    if (state === 'start') {
      // Schedule(aborted_ = false; SetDeviceState(kDeviceStateSpeaking)): from idle or listening.
      if (this.state !== 'idle' && this.state !== 'listening' && this.state !== 'speaking') return;
      this.#awaitingReply = false;
      if (this.state === 'speaking') return; // same-state transition: nothing happens
      if (this.state === 'listening' && this.#listeningMode !== 'realtime') this.#mic.stop();
      this.state = 'speaking';
      this.sink.ttsStart(now);
      this.#cancelTurnTimers();
      this.#armTtsStopWatch();
      const bargeIn = this.#user.bargeInAfterMs(this.#turnId);
      if (!this.#draining && bargeIn !== null) {
        this.#abortTimer = this.env.scheduler.after(bargeIn, () => {
          this.#abortTimer = null;
          this.#bargeIn();
        });
      }
    } else if (state === 'stop') {
      if (this.state !== 'speaking') {
        this.sink.ttsStop(now); // counts a stop outside speaking
        return;
      }
      this.sink.ttsStop(now);
      this.#cancelTurnTimers();
      this.#nextTurn();
    } else if (state === 'sentence_start') {
      this.stats.messages.sentenceStart++;
    }
  }

  /** No tts stop long after the last audio: the firmware would sit in speaking; we record and move on. */
  #armTtsStopWatch(): void {
    const check = (): void => {
      this.#turnTimer = null;
      if (this.state !== 'speaking') return;
      const t = this.sink.turn;
      const last = Math.max(t?.lastAudioAt ?? 0, t?.ttsStartAt ?? 0);
      const due = last + this.options.ttsStopTimeoutMs;
      if (this.now < due) {
        this.#turnTimer = this.env.scheduler.at(due, check);
        return;
      }
      this.#fail('missing-tts-stop', `no tts stop ${this.options.ttsStopTimeoutMs} ms after the last audio`);
      this.sink.leaveSpeaking(this.now);
      this.#nextTurn();
    };
    this.#turnTimer = this.env.scheduler.after(this.options.ttsStopTimeoutMs, check);
  }

  /**
   * Barge-in (HandleStartListeningEvent while speaking): abort, then listening in manual mode; the
   * state change resets the decoder, so the rest of the reply is not played.
   */
  #bargeIn(): void {
    if (this.state !== 'speaking') return;
    if (!this.#sendText(abortMessage(this.#sessionId))) {
      this.#sendFailed();
      return;
    }
    this.sink.abort(this.now);
    this.#cancelTurnTimers();
    this.#listeningMode = 'manual';
    this.#enterListening(0);
  }

  /** After a reply (or a failed one): the next turn, a new session, or shutting down. */
  #nextTurn(): void {
    const now = this.now;
    if (this.#draining) {
      this.state = this.#listeningMode === 'manual' ? 'idle' : 'listening';
      // Keep the socket open a moment to catch audio that arrives after tts stop.
      this.env.scheduler.after(SETTLE_MS, () => this.#powerOff());
      return;
    }
    const rotate = this.#user.endsSession(this.#turnsThisSession);
    if (this.#listeningMode === 'manual' || rotate || !this.#udp) {
      // tts stop in manual mode → idle; the user presses the button again after a pause.
      this.#mic.stop();
      this.state = 'idle';
      this.#scheduleConversation(this.#user.pauseMs());
      return;
    }
    if (this.#listeningMode === 'realtime' && this.#mic.continuous) {
      // Realtime: listening again with voice processing still running, so no listen start
      // (HandleStateChangedEvent only reconfigures wake word); the user pauses, then speaks.
      this.state = 'listening';
      this.env.scheduler.cancel(this.#nextTimer);
      this.#nextTimer = this.env.scheduler.after(this.#user.pauseMs(), () => {
        this.#nextTimer = null;
        this.#speakAgain();
      });
      return;
    }
    // auto: kDeviceStateListening; StartListeningAudio waits until playback drained (auto mode only).
    this.state = 'listening';
    const startAt = this.#listeningMode === 'auto' ? this.sink.playback.drainedAt(now) : now;
    this.env.scheduler.cancel(this.#nextTimer);
    this.#nextTimer = this.env.scheduler.at(startAt, () => {
      this.#nextTimer = null;
      if (this.state !== 'listening' || this.#draining) {
        if (this.#draining) this.#powerOff();
        return;
      }
      if (!this.#channelOpen()) {
        this.state = 'idle';
        this.#scheduleConversation(0);
        return;
      }
      // EnableVoiceProcessing(true) → ResetDecoder; the user pauses (silence streamed), then speaks.
      this.sink.playback.reset(this.now);
      this.#enterListening(this.#user.pauseMs());
    });
  }

  // ---- MCP ----------------------------------------------------------------------------------------

  #onMcp(payload: Record<string, unknown>): void {
    const reply = mcpReply(payload, this.options.identity, this);
    if (reply === null) return;
    this.stats.mcpReplies++;
    this.#sendText(mcpMessage(this.#sessionId, reply));
  }

  volume = 70;
}
