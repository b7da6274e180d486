// The device simulator: stock xiaozhi firmware behaviour, byte for byte, for load and conformance tests.
export { buildUplinkClip, envelopeCorrelation, synthesizeSpeech, readS16File, type UplinkClip, type ClipOptions } from './audio.js';
export { ManualClock, Scheduler, realClock, type Clock, type TimerHandle } from './clock.js';
export { createDecodeService, InlineDecodeService, WorkerDecodeService, type DecodeResult, type DecodeService } from './decoder.js';
export { SimDevice, type DeviceEnv, type DeviceState, type SimDeviceOptions } from './device.js';
export {
  FIRMWARE,
  FIRMWARE_PROFILES,
  firmwareRules,
  helloMessage,
  listenStartMessage,
  listenStopMessage,
  abortMessage,
  goodbyeMessage,
  mcpMessage,
  parseHelloReply,
  applyOtaReply,
  mqttSettingsFrom,
  type FirmwareProfileName,
  type FirmwareRules,
  type ListeningMode,
} from './firmware.js';
export { GatewayMonitor, parseProm, type GatewayResourceReport } from './gateway-metrics.js';
export { otaHeaders, otaRequest, systemInfoJson, type DeviceIdentity } from './ota.js';
export { PlaybackModel, MAX_DECODE_PACKETS_IN_QUEUE } from './playback.js';
export { DownlinkReceiver, SequenceTracker, DROP_REASONS, type DropReason, type ReceiveVerdict } from './receiver.js';
export { formatProgress, formatSummary } from './report.js';
export { runSimulation, type SimulationOptions, type SimulationProgress, type SimulationSummary } from './simulator.js';
export { AudioSink, type TurnRecord } from './sink.js';
export { DeviceStats, distribution, percentile } from './stats.js';
export { runSimulateCli, parseSimulateArgs } from './cli.js';
