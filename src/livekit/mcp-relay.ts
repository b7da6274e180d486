// Device MCP tools for the agent, over LiveKit RPC. The agent calls the RPC method the device's
// participant registers (attribute xiaozhi.mcp_method, default "xiaozhi.mcp") with a JSON-RPC 2.0
// message as payload; the gateway sends it to the device over MQTT ({"type":"mcp","payload":...})
// and returns the device's JSON-RPC reply as the RPC response. Ids are rewritten so concurrent
// calls (or two agents) can never collide on the device, and restored in the reply.
// Errors: a payload that is not a JSON-RPC object → APPLICATION_ERROR (1500); no reply in time →
// RESPONSE_TIMEOUT (1502); session ending with calls pending → RECIPIENT_DISCONNECTED (1503). A
// JSON-RPC error from the device is a normal reply (the agent's MCP client handles it).
import { RpcError, type RpcInvocationData } from '@livekit/rtc-node';

export interface McpRelayOptions {
  /** Sends a JSON-RPC message to the device (over MQTT). */
  toDevice(payload: Record<string, unknown>): void;
  timeoutMs: number;
  timers?: { setTimeout: typeof setTimeout; clearTimeout: typeof clearTimeout };
}

interface Pending {
  originalId: unknown;
  resolve(reply: string): void;
  reject(err: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

// Leave the agent's RPC layer time to carry our answer back before its own deadline fires.
const RESPONSE_MARGIN_MS = 500;

export class McpRelay {
  readonly #o: McpRelayOptions;
  readonly #timers: NonNullable<McpRelayOptions['timers']>;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #closed = false;

  constructor(o: McpRelayOptions) {
    this.#o = o;
    this.#timers = o.timers ?? { setTimeout, clearTimeout };
  }

  get pending(): number {
    return this.#pending.size;
  }

  /** The RPC handler: resolves with the device's JSON-RPC reply, '' for notifications. */
  handle = async (data: Pick<RpcInvocationData, 'payload' | 'responseTimeout' | 'callerIdentity'>): Promise<string> => {
    if (this.#closed) throw RpcError.builtIn('RECIPIENT_DISCONNECTED');
    let msg: unknown;
    try {
      msg = JSON.parse(data.payload);
    } catch {
      throw new RpcError(RpcError.ErrorCode.APPLICATION_ERROR, 'payload is not JSON (expected a JSON-RPC 2.0 message)');
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || typeof (msg as { method?: unknown }).method !== 'string') {
      throw new RpcError(RpcError.ErrorCode.APPLICATION_ERROR, 'expected a JSON-RPC 2.0 request or notification object with a "method"');
    }
    const m: Record<string, unknown> = { jsonrpc: '2.0', ...(msg as Record<string, unknown>) };
    if (!('id' in m) || m.id === null || m.id === undefined) {
      this.#o.toDevice(m);
      return '';
    }
    const id = this.#nextId++;
    const budget = Math.max(100, Math.min(this.#o.timeoutMs, (data.responseTimeout || this.#o.timeoutMs + RESPONSE_MARGIN_MS) - RESPONSE_MARGIN_MS));
    return new Promise<string>((resolve, reject) => {
      const timer = this.#timers.setTimeout(() => {
        this.#pending.delete(id);
        reject(new RpcError(RpcError.ErrorCode.RESPONSE_TIMEOUT, `the device did not answer ${String(m.method)} within ${budget} ms`, JSON.stringify({ method: m.method })));
      }, budget);
      this.#pending.set(id, { originalId: m.id, resolve, reject, timer });
      this.#o.toDevice({ ...m, id });
    });
  };

  /** A JSON-RPC message from the device; true if it answered a relayed call. */
  fromDevice(payload: Record<string, unknown>): boolean {
    const id = payload.id;
    if (typeof id !== 'number') return false;
    const p = this.#pending.get(id);
    if (!p) return false;
    this.#pending.delete(id);
    this.#timers.clearTimeout(p.timer);
    p.resolve(JSON.stringify({ ...payload, id: p.originalId }));
    return true;
  }

  close(): void {
    this.#closed = true;
    for (const p of this.#pending.values()) {
      this.#timers.clearTimeout(p.timer);
      p.reject(RpcError.builtIn('RECIPIENT_DISCONNECTED'));
    }
    this.#pending.clear();
  }
}
