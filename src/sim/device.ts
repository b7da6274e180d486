// One simulated stock device: OTA check, MQTT connect with the returned credentials (subscribing to
// nothing), hello, a connected UDP socket with the nonce-derived header/IV and sequence rules, and
// the Application state machine (idle / connecting / listening / speaking) driving conversation
// turns. What the firmware does is mirrored step by step; see the comments naming its functions.
import { createSocket, type Socket } from 'node:dgram';
import { connect as tcpConnect, isIP, isIPv6 } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { MqttClient } from 'mqtt';
import { AesCtr } from '../native/index.js';
import { FRAME_MS, mulberry32, silenceIndex, type UplinkClip } from './audio.js';
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
import { otaRequest, type DeviceIdentity } from './ota.js';
import { HEADER_SIZE } from './receiver.js';
import { AudioSink } from './sink.js';
import { DeviceStats, type FailureKind } from './stats.js';

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

/** At most this many frames are added to a turn to end it in a pause rather than mid-word. */
const MAX_UTTERANCE_EXTENSION = 35;

interface Mic {
  /** Frames of silence, then frames of speech (extended to the next pause), then listen stop. */
  silenceFrames: number;
  speechFrames: number;
  extended: number;
  lastWasPause: boolean;
  /** Realtime (full duplex): after the speech the mic keeps streaming silence, no listen stop. */
  continuous: boolean;
  /** continuous: the end of the current utterance has been marked. */
  endMarked: boolean;
  sent: number;
  startAt: number;
  timer: TimerHandle | null;
}

export class SimDevice {
  readonly options: SimDeviceOptions;
  readonly stats = new DeviceStats();
  readonly sink: AudioSink;
  readonly env: DeviceEnv;
  state: DeviceState = 'off';
  /** Why the device is not running a conversation right now (shown in the report on failure). */
  lastError = '';

  #settings = new Map<string, string | number>();
  #mqtt: MqttClient | null = null;
  #mqttSettings: MqttSettings | null = null;
  #mqttConnected = false;
  #udp: Socket | null = null;
  #udpServer = '';
  #udpPort = 0;
  #nonce: Buffer | null = null;
  #cipher: AesCtr | null = null;
  #localSeq = 0;
  #sessionId = '';
  #errorOccurred = false;
  #lastIncoming = 0;
  #helloWaiter: ((ok: boolean) => void) | null = null;
  #helloInvalid: 'invalid' | 'crash' | null = null;
  #listeningMode: ListeningMode;
  #mic: Mic | null = null;
  #speechCursor: number;
  #silenceCursor = 0;
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
  #rand: () => number;

  constructor(options: SimDeviceOptions, env: DeviceEnv) {
    this.options = options;
    this.env = env;
    this.#rand = mulberry32(0x51d0 ^ Math.imul(options.index + 1, 0x9e3779b1));
    this.#listeningMode = options.mode;
    this.#aec = options.mode === 'realtime';
    this.#speechCursor = options.clipOffset % Math.max(1, env.clip.speech.length);
    this.sink = new AudioSink({
      rules: options.rules,
      decoder: env.decoder,
      device: options.index,
      stats: this.stats,
      recordTimestamps: this.#aec,
      decode: options.decode,
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
    return this.#mqttConnected;
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
    else if (this.state === 'listening' && this.#mic?.continuous && this.#mic.endMarked && !this.#awaitingReply) this.#powerOff();
  }

  /** Immediate power-off (drain took too long). */
  kill(): void {
    this.#draining = true;
    this.#powerOff();
  }

  #powerOff(): void {
    if (this.state === 'stopped') return;
    this.#epoch++;
    this.#stopMic();
    for (const t of [this.#turnTimer, this.#nextTimer, this.#abortTimer]) this.env.scheduler.cancel(t);
    const now = this.now;
    if (this.#udp) this.#closeAudioChannel(true);
    this.sink.close(now);
    const client = this.#mqtt;
    this.#mqtt = null;
    this.#mqttConnected = false;
    if (client) client.end(false, () => undefined);
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

  /** The user's pause before the next turn: pauseMs ± 25 %, so devices do not talk in lockstep. */
  #pause(): number {
    return Math.round(this.options.pauseMs * (0.75 + 0.5 * this.#rand()));
  }

  /** After a failed connection: the user tries again later, later each time. */
  #retryDelay(): number {
    return Math.min(30_000, 1000 * 2 ** Math.max(0, this.#mqttFailures - 1));
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((r) => this.env.scheduler.after(ms, r));
  }

  // ---- MQTT ---------------------------------------------------------------------------------------

  #startMqtt(): Promise<boolean> {
    const s = this.#mqttSettings;
    if (!s) return Promise.resolve(false);
    if (this.#mqtt) {
      const old = this.#mqtt;
      this.#mqtt = null;
      old.end(true);
    }
    this.stats.mqttConnects++;
    const epoch = this.#epoch;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (ok: boolean, why?: string): void => {
        if (settled) return;
        settled = true;
        if (epoch !== this.#epoch) {
          // powered off meanwhile: not the gateway's fault
          resolve(false);
          return;
        }
        if (!ok) {
          this.#mqttFailures++;
          this.#fail('mqtt-connect', why ?? 'failed');
        } else {
          this.#mqttFailures = 0;
        }
        resolve(ok);
      };
      const local = this.#localFor(s.host);
      // The firmware's MQTT client: plain TCP, or TLS exactly when the port is 8883.
      const stream = () =>
        s.tls
          ? tlsConnect({
              host: s.host,
              port: s.port,
              ...(isIP(s.host) ? {} : { servername: s.host }),
              rejectUnauthorized: !this.options.insecure,
              ...(local ? { localAddress: local } : {}),
            })
          : tcpConnect({ host: s.host, port: s.port, ...(local ? { localAddress: local } : {}) });
      const client = new MqttClient(stream, {
        protocolVersion: 4,
        clean: true,
        clientId: s.clientId,
        ...(s.username ? { username: s.username } : {}),
        ...(s.password ? { password: s.password } : {}),
        keepalive: s.keepalive,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        queueQoSZero: false,
        resubscribe: false,
      });
      this.#mqtt = client;
      client.on('connect', () => {
        if (epoch !== this.#epoch || this.#mqtt !== client) return;
        this.#mqttConnected = true;
        settle(true);
      });
      client.on('message', (_topic, payload) => {
        if (epoch !== this.#epoch || this.#mqtt !== client) return;
        this.#onMqttMessage(payload);
      });
      client.on('error', (err) => {
        if (!settled) settle(false, err.message);
      });
      client.on('close', () => {
        if (!settled) settle(false, 'connection closed before CONNACK');
        if (this.#mqtt !== client || epoch !== this.#epoch) return;
        const wasConnected = this.#mqttConnected;
        this.#mqttConnected = false;
        if (wasConnected && this.state !== 'stopped') this.#onMqttLost();
      });
    });
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
    if (!topic || !this.#mqtt || !this.#mqttConnected) return false;
    if (this.options.log) this.#log(`>> ${text}  (state ${this.state})`);
    this.#mqtt.publish(topic, text, { qos: 0, retain: false });
    return true;
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
    this.#nonce = reply.udp.nonce;
    this.#cipher?.close();
    this.#cipher = new AesCtr(reply.udp.key);
    this.#localSeq = 0;
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
    if (!this.#mqttConnected) {
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
      else if (this.#mqttConnected) this.#fail('hello-timeout', `no hello reply within ${HELLO_TIMEOUT_MS / 1000} s`);
      return false;
    }
    this.stats.sessionsOpened++;
    this.#turnsThisSession = 0;
    // Udp::Connect to udp.server:udp.port: replies are accepted from exactly there.
    const sock = await this.#connectUdp(this.#udpServer, this.#udpPort);
    if (epoch !== this.#epoch) {
      sock?.close();
      return false;
    }
    if (!sock) return false;
    this.#udp = sock;
    const p = this.#pendingAudioParams;
    this.sink.openChannel(this.#cipher!, p?.sampleRate, p?.frameDuration);
    this.#pendingAudioParams = null;
    this.#lastIncoming = this.now;
    return true;
  }

  #connectUdp(server: string, port: number): Promise<Socket | null> {
    return new Promise((resolve) => {
      const sock = createSocket({ type: isIPv6(server) ? 'udp6' : 'udp4' });
      let done = false;
      const finish = (ok: boolean, why?: string): void => {
        if (done) return;
        done = true;
        if (!ok) {
          this.#fail('udp', `connect ${server}:${port}: ${why}`);
          try {
            sock.close();
          } catch {
            /* already closed */
          }
          resolve(null);
          return;
        }
        resolve(sock);
      };
      sock.on('error', (err) => {
        if (!done) finish(false, err.message);
        // A connected socket reports ICMP unreachable as errors on later sends; the device ignores them.
      });
      sock.on('message', (msg) => {
        if (this.#udp !== sock) return;
        this.#lastIncoming = this.now;
        this.sink.datagram(msg, this.now);
      });
      const local = this.#localFor(server);
      if (local) sock.bind({ address: local, port: 0 }, () => sock.connect(port, server, () => finish(true)));
      else sock.connect(port, server, () => finish(true));
    });
  }

  /** MqttProtocol::CloseAudioChannel(send_goodbye). */
  #closeAudioChannel(sendGoodbye: boolean): void {
    const sock = this.#udp;
    this.#udp = null;
    if (sock) {
      try {
        sock.close();
      } catch {
        /* closed */
      }
    }
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
    this.#stopMic();
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
    this.#scheduleConversation(this.#pause());
  }

  #reboot(): void {
    this.stats.reboots++;
    if (this.#udp) this.#closeAudioChannel(true);
    this.#stopMic();
    this.#cancelTurnTimers();
    this.env.scheduler.cancel(this.#nextTimer);
    this.sink.finalizeTurn();
    const client = this.#mqtt;
    this.#mqtt = null;
    this.#mqttConnected = false;
    client?.end(true);
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
    if (this.options.turnsPerSession > 0 && this.#turnsThisSession >= this.options.turnsPerSession && this.#udp) {
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
    this.#startMic(Math.round(silenceMs / FRAME_MS), this.#speechFrames(), this.#listeningMode === 'realtime');
  }

  #speechFrames(): number {
    return Math.max(1, Math.round(this.options.speakMs / FRAME_MS));
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
    const mic = this.#mic;
    if (!mic || !mic.continuous || this.#draining || this.state !== 'listening') {
      if (this.#draining) this.#powerOff();
      return;
    }
    this.sink.finalizeTurn();
    this.#turnId++;
    this.#turnsThisSession++;
    this.stats.turnsStarted++;
    this.sink.beginTurn(this.#turnId);
    mic.silenceFrames = mic.sent;
    mic.speechFrames = this.#speechFrames();
    mic.extended = 0;
    mic.endMarked = false;
    mic.lastWasPause = true;
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
    this.#stopMic();
    this.#cancelTurnTimers();
    this.sink.leaveSpeaking(this.now);
    this.sink.finalizeTurn();
    this.state = 'idle';
  }

  #startMic(silenceFrames: number, speechFrames: number, continuous = false): void {
    this.#stopMic();
    const mic: Mic = { silenceFrames, speechFrames, extended: 0, lastWasPause: true, continuous, endMarked: false, sent: 0, startAt: this.now, timer: null };
    this.#mic = mic;
    this.#silenceCursor = 0;
    // The first frame leaves one frame time after capture starts.
    mic.timer = this.env.scheduler.at(mic.startAt + FRAME_MS, () => this.#micTick(mic));
  }

  #stopMic(): void {
    if (this.#mic) {
      this.env.scheduler.cancel(this.#mic.timer);
      this.#mic = null;
    }
  }

  #micTick(mic: Mic): void {
    if (this.#mic !== mic) return;
    const clip = this.env.clip;
    // Catch up if the event loop was late, as the firmware's send queue would.
    const due = Math.floor((this.now - mic.startAt) / FRAME_MS);
    while (mic.sent < due) {
      let trailing = false;
      if (mic.sent >= mic.silenceFrames + mic.speechFrames) {
        if (!mic.endMarked && !mic.lastWasPause && mic.extended < MAX_UTTERANCE_EXTENSION) {
          // The user finishes the word: keep talking until a pause.
          mic.speechFrames++;
          mic.extended++;
        } else if (!mic.continuous) {
          break;
        } else {
          // Full duplex: the utterance is over, the microphone goes on (silence) until the next one.
          trailing = true;
          if (!mic.endMarked) {
            mic.endMarked = true;
            this.#endOfSpeech();
            if (this.#mic !== mic) return;
          }
        }
      }
      let payload: Buffer;
      let env: Float32Array;
      let frame: number;
      if (mic.sent < mic.silenceFrames || trailing) {
        frame = silenceIndex(clip, this.#silenceCursor++);
        payload = clip.silence[frame]!;
        env = clip.silenceEnvelope;
      } else {
        frame = this.#speechCursor;
        this.#speechCursor = (this.#speechCursor + 1) % clip.speech.length;
        payload = clip.speech[frame]!;
        env = clip.speechEnvelope;
        mic.lastWasPause = clip.pauseAfter[frame] === 1;
      }
      mic.sent++;
      this.#sendAudio(payload);
      this.sink.noteSent(env, frame);
    }
    const total = mic.silenceFrames + mic.speechFrames;
    if (!mic.continuous && mic.sent >= total && (mic.lastWasPause || mic.extended >= MAX_UTTERANCE_EXTENSION)) {
      this.#mic = null;
      this.#releaseButton();
      return;
    }
    mic.timer = this.env.scheduler.at(mic.startAt + (mic.sent + 1) * FRAME_MS, () => this.#micTick(mic));
  }

  /** MqttProtocol::SendAudio: header from the nonce, payload_len, timestamp, ++sequence; AES-CTR. */
  #sendAudio(opus: Buffer): void {
    const sock = this.#udp;
    const nonce = this.#nonce;
    const cipher = this.#cipher;
    if (!sock || !nonce || !cipher) return;
    const out = Buffer.allocUnsafe(HEADER_SIZE + opus.length);
    nonce.copy(out, 0, 0, HEADER_SIZE);
    out.writeUInt16BE(opus.length, 2);
    const ts = this.#aec ? this.sink.playback.takeUplinkTimestamp(this.now) : 0;
    out.writeUInt32BE(ts >>> 0, 8);
    this.#localSeq = (this.#localSeq + 1) >>> 0;
    out.writeUInt32BE(this.#localSeq, 12);
    cipher.crypt(out.subarray(0, HEADER_SIZE), opus, out.subarray(HEADER_SIZE));
    this.stats.uplinkPackets++;
    this.stats.uplinkBytes += out.length;
    // Send errors on a connected socket (ICMP unreachable) are ignored, like Udp::Send's result.
    sock.send(out, () => undefined);
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
      if (this.state === 'listening' && this.#listeningMode !== 'realtime') this.#stopMic();
      this.state = 'speaking';
      this.sink.ttsStart(now);
      this.#cancelTurnTimers();
      this.#armTtsStopWatch();
      const n = this.#turnId;
      if (!this.#draining && this.options.abortEvery > 0 && n % this.options.abortEvery === 0) {
        this.#abortTimer = this.env.scheduler.after(this.options.abortAfterMs, () => {
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
    const rotate = this.options.turnsPerSession > 0 && this.#turnsThisSession >= this.options.turnsPerSession;
    if (this.#listeningMode === 'manual' || rotate || !this.#udp) {
      // tts stop in manual mode → idle; the user presses the button again after a pause.
      this.#stopMic();
      this.state = 'idle';
      this.#scheduleConversation(this.#pause());
      return;
    }
    if (this.#listeningMode === 'realtime' && this.#mic?.continuous) {
      // Realtime: listening again with voice processing still running, so no listen start
      // (HandleStateChangedEvent only reconfigures wake word); the user pauses, then speaks.
      this.state = 'listening';
      this.env.scheduler.cancel(this.#nextTimer);
      this.#nextTimer = this.env.scheduler.after(this.#pause(), () => {
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
      this.#enterListening(this.#pause());
    });
  }

  // ---- MCP ----------------------------------------------------------------------------------------

  #onMcp(payload: Record<string, unknown>): void {
    if (payload.jsonrpc !== '2.0' || typeof payload.method !== 'string') return;
    const method = payload.method;
    if (method.startsWith('notifications')) return;
    if (payload.params !== undefined && (typeof payload.params !== 'object' || payload.params === null || Array.isArray(payload.params))) return;
    if (typeof payload.id !== 'number') return;
    const id = Math.trunc(payload.id);
    const params = (payload.params ?? {}) as Record<string, unknown>;
    const reply = (result: string): void => {
      this.stats.mcpReplies++;
      this.#sendText(mcpMessage(this.#sessionId, `{"jsonrpc":"2.0","id":${id},"result":${result}}`));
    };
    const error = (message: string): void => {
      this.stats.mcpReplies++;
      this.#sendText(mcpMessage(this.#sessionId, `{"jsonrpc":"2.0","id":${id},"error":{"message":"${message}"}}`));
    };
    const id0 = this.options.identity;
    if (method === 'initialize') {
      reply(`{"protocolVersion":"2024-11-05","capabilities":{"tools":{}},"serverInfo":{"name":"${id0.board}","version":"${id0.version}"}}`);
    } else if (method === 'tools/list') {
      reply(`{"tools":[${MCP_TOOLS.map((t) => t.json).join(',')}]}`);
    } else if (method === 'tools/call') {
      const name = params.name;
      if (typeof name !== 'string') return error('Missing name');
      const args = params.arguments;
      if (args !== undefined && (typeof args !== 'object' || args === null || Array.isArray(args))) return error('Invalid arguments');
      const tool = MCP_TOOLS.find((t) => t.name === name);
      if (!tool) return error(`Unknown tool: ${name}`);
      const result = tool.call((args ?? {}) as Record<string, unknown>, this);
      if (result instanceof Error) return error(result.message);
      reply(`{"content":[{"type":"text","text":${JSON.stringify(result)}}],"isError":false}`);
    } else {
      error(`Method not implemented: ${method}`);
    }
  }

  volume = 70;
}

interface McpTool {
  name: string;
  json: string;
  call(args: Record<string, unknown>, device: SimDevice): string | Error;
}

/** A few of the firmware's common tools (McpServer::AddCommonTools), enough to exercise a relay. */
const MCP_TOOLS: McpTool[] = [
  {
    name: 'self.get_device_status',
    json: '{"name":"self.get_device_status","description":"Provides the real-time information of the device, including the current status of the audio speaker, screen, battery, network, etc.\\nUse this tool for: \\n1. Answering questions about current condition (e.g. what is the current volume of the audio speaker?)\\n2. As the first step to control the device (e.g. turn up / down the volume of the audio speaker, etc.)","inputSchema":{"type":"object","properties":{}}}',
    call: (_a, d) => JSON.stringify({ audio_speaker: { volume: d.volume }, screen: { brightness: 75, theme: 'light' }, network: { type: 'wifi', ssid: 'sim', signal: 'strong' } }),
  },
  {
    name: 'self.audio_speaker.set_volume',
    json: '{"name":"self.audio_speaker.set_volume","description":"Set the volume of the audio speaker. If the current volume is unknown, you must call `self.get_device_status` tool first and then call this tool.","inputSchema":{"type":"object","properties":{"volume":{"type":"integer","minimum":0,"maximum":100}},"required":["volume"]}}',
    call: (a, d) => {
      if (typeof a.volume !== 'number') return new Error('Missing valid argument: volume');
      const v = Math.trunc(a.volume);
      if (v < 0 || v > 100) return new Error(`Value is out of range: volume`);
      d.volume = v;
      return 'true';
    },
  },
  {
    name: 'self.screen.set_brightness',
    json: '{"name":"self.screen.set_brightness","description":"Set the brightness of the screen.","inputSchema":{"type":"object","properties":{"brightness":{"type":"integer","minimum":0,"maximum":100}},"required":["brightness"]}}',
    call: (a) => (typeof a.brightness === 'number' ? 'true' : new Error('Missing valid argument: brightness')),
  },
];
