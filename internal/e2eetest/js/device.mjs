// One Matrix device, driven by the Go test over stdin/stdout: matrix-js-sdk with the Rust crypto
// stack (matrix-sdk-crypto-wasm), its crypto store in an IndexedDB (fake-indexeddb) that lives as
// long as this process, so a device keeps its Olm/Megolm state across the cutover.
//
// Protocol: one JSON command per line on stdin, {"id": N, "cmd": "...", ...args}; one JSON answer
// per line on stdout, {"id": N, "ok": true, "result": {...}} or {"id": N, "ok": false, "error": "..."}.
// Commands run concurrently (a verification needs both sides waiting at once). Logs go to stderr.

import "./console-to-stderr.mjs";
import "fake-indexeddb/auto";
import { createInterface } from "node:readline";
import * as sdk from "matrix-js-sdk";
import {
  CryptoEvent,
  VerificationPhase,
  VerificationRequestEvent,
  VerifierEvent,
  decodeRecoveryKey,
} from "matrix-js-sdk/lib/crypto-api/index.js";
import { logger } from "matrix-js-sdk/lib/logger.js";

logger.setLevel(process.env.TM_E2EE_SDK_LOG || "warn");

const WAIT_MS = Number(process.env.TM_E2EE_WAIT_MS || 60000);

function log(...a) {
  console.error(`[${process.env.TM_E2EE_NAME || "device"}]`, ...a);
}

/** Polls check() every 100 ms until it returns a truthy value or WAIT_MS pass; then throws what. */
async function until(what, check) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const state = {
  client: null,
  password: null,
  userId: null,
  ssssKeys: new Map(), // secret-storage key ID -> private key
  recoveryKey: null, // decoded recovery key, for a device that restores from it
  keysQueried: 0, // /keys/query answers seen since start
  incoming: [], // verification requests received
  verifier: null,
  sas: null,
  verifyDone: null,
};

/** fetch that counts answered /keys/query requests, so a test can wait for a fresh download. */
async function countingFetch(input, init) {
  const res = await fetch(input, init);
  const url = String(input?.url ?? input);
  if (url.includes("/keys/query") && res.ok) state.keysQueried++;
  if (process.env.TM_E2EE_TRACE) log("http", init?.method ?? "GET", url.replace(/access_token=[^&]*/, "access_token=…"), res.status);
  return res;
}

const cryptoCallbacks = {
  getSecretStorageKey: async ({ keys }) => {
    for (const id of Object.keys(keys)) {
      if (state.ssssKeys.has(id)) return [id, state.ssssKeys.get(id)];
    }
    if (state.recoveryKey) return [Object.keys(keys)[0], state.recoveryKey];
    return null;
  },
  cacheSecretStorageKey: (keyId, _info, key) => {
    state.ssssKeys.set(keyId, key);
  },
};

function newClient({ base_url, user_id, device_id, access_token }) {
  return sdk.createClient({
    baseUrl: base_url,
    userId: user_id,
    deviceId: device_id,
    accessToken: access_token,
    fetchFn: countingFetch,
    cryptoCallbacks,
    timelineSupport: true,
  });
}

async function startClient(args) {
  const client = newClient(args);
  // The Rust crypto store's IndexedDB name is fixed per process: one device per process.
  await client.initRustCrypto({ useIndexedDB: true });
  client.on(CryptoEvent.VerificationRequestReceived, (req) => {
    log("verification request from", req.otherUserId);
    state.incoming.push(req);
  });
  const prepared = new Promise((resolve, reject) => {
    const onSync = (s, _prev, data) => {
      if (s === "PREPARED" || s === "SYNCING") {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (s === "ERROR") {
        log("sync error", data?.error?.message);
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
    setTimeout(() => reject(new Error(`first sync on ${args.base_url} did not complete in ${WAIT_MS} ms`)), WAIT_MS);
  });
  await client.startClient({ initialSyncLimit: 50 });
  await prepared;
  state.client = client;
  state.userId = args.user_id;
  return client;
}

function authUpload(password, userId) {
  return async (makeRequest) => {
    await makeRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: userId },
      password,
    });
  };
}

function need() {
  if (!state.client) throw new Error("no client: send login or resume first");
  return state.client;
}

function eventBody(ev) {
  return ev.getContent()?.body;
}

const commands = {
  // Password login (a new device), then first sync.
  async login({ base_url, user_id, password, device_id }) {
    const tmp = sdk.createClient({ baseUrl: base_url, fetchFn: countingFetch });
    const res = await tmp.loginRequest({
      type: "m.login.password",
      identifier: { type: "m.id.user", user: user_id },
      password,
      device_id,
      initial_device_display_name: process.env.TM_E2EE_NAME || "e2ee test device",
    });
    state.password = password;
    await startClient({ base_url, user_id: res.user_id, device_id: res.device_id, access_token: res.access_token });
    return { user_id: res.user_id, device_id: res.device_id, access_token: res.access_token };
  },

  // The same device again (same token, same crypto store), maybe on another base URL: like a
  // client reloaded after its homeserver moved. The crypto store is the one this process kept.
  async resume({ base_url, user_id, device_id, access_token, password, rooms }) {
    if (state.client) throw new Error("resume: stop the running client first");
    state.password = password ?? state.password;
    const c = await startClient({ base_url, user_id, device_id, access_token });
    for (const r of rooms ?? []) await until(`room ${r} in the first sync`, () => c.getRoom(r)?.getMyMembership() === "join");
    const who = await c.whoami();
    if (who.user_id !== user_id || (who.device_id && who.device_id !== device_id)) {
      throw new Error(`resume: token is ${who.user_id}/${who.device_id}, want ${user_id}/${device_id}`);
    }
    return { user_id: who.user_id, device_id: who.device_id ?? null };
  },

  async stop() {
    const c = need();
    c.stopClient();
    state.client = null;
    return {};
  },

  // Cross-signing; with backup, secret storage and a key backup, returning the recovery key.
  async bootstrap({ backup }) {
    const c = need();
    const crypto = c.getCrypto();
    await crypto.bootstrapCrossSigning({ authUploadDeviceSigningKeys: authUpload(state.password, state.userId) });
    let recovery_key = null;
    if (backup) {
      const key = await crypto.createRecoveryKeyFromPassphrase();
      await crypto.bootstrapSecretStorage({
        createSecretStorageKey: async () => key,
        setupNewSecretStorage: true,
        setupNewKeyBackup: true,
      });
      recovery_key = key.encodedPrivateKey;
    }
    const ready = await crypto.isCrossSigningReady();
    const version = backup ? await until("the new key backup to be active", () => crypto.getActiveSessionBackupVersion()) : null;
    return { cross_signing_ready: ready, backup_version: version, recovery_key };
  },

  async create_room({ invite, name, room_version }) {
    const c = need();
    const { room_id } = await c.createRoom({
      name,
      ...(room_version ? { room_version } : {}),
      preset: sdk.Preset.PrivateChat,
      invite,
      initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }],
    });
    await until(`room ${room_id} in sync`, () => c.getRoom(room_id));
    return { room_id };
  },

  async join({ room_id }) {
    const c = need();
    await until(`invite to ${room_id}`, () => c.getRoom(room_id)?.getMyMembership() === "invite");
    await c.joinRoom(room_id);
    await until(`joined ${room_id}`, () => c.getRoom(room_id)?.getMyMembership() === "join");
    return {};
  },

  async wait_joined({ room_id, user_id }) {
    const c = need();
    await until(`${user_id} joined ${room_id}`, () => c.getRoom(room_id)?.getMember(user_id)?.membership === "join");
    return {};
  },

  async send({ room_id, body }) {
    const c = need();
    // js-sdk sends in the clear to a room it does not know: refuse instead.
    const room = c.getRoom(room_id);
    if (!room) throw new Error(`send: room ${room_id} is not in this client's sync (rooms: ${c.getRooms().map((r) => r.roomId).join(", ") || "none"})`);
    if (!(await c.getCrypto().isEncryptionEnabledInRoom(room_id))) throw new Error(`send: ${room_id} is not encrypted for this client`);
    const { event_id } = await c.sendTextMessage(room_id, body);
    return { event_id };
  },

  // Waits until an event with this body is in the room's live timeline, decrypted.
  async wait_message({ room_id, body }) {
    const c = need();
    const ev = await until(`message "${body}" in ${room_id}`, async () => {
      const room = c.getRoom(room_id);
      if (!room) return null;
      for (const e of room.getLiveTimeline().getEvents()) {
        if (e.isBeingDecrypted() || e.shouldAttemptDecryption()) await c.decryptEventIfNeeded(e);
        if (eventBody(e) === body) return e;
      }
      return null;
    });
    return { event_id: ev.getId(), sender: ev.getSender(), encrypted: ev.isEncrypted(), decryption_failure: ev.isDecryptionFailure() };
  },

  // Waits until this device knows the other device's keys (a verification request from a device
  // not yet downloaded is dropped by the crypto stack).
  async wait_device({ user_id, device_id }) {
    const crypto = need().getCrypto();
    await until(`${user_id}'s device ${device_id}`, async () => (await crypto.getUserDeviceInfo([user_id], true)).get(user_id)?.has(device_id));
    return {};
  },

  // Asks the other user to verify in the room (SAS), and returns the decimals once both sides show them.
  async verify_request({ user_id, room_id }) {
    const c = need();
    const req = await c.getCrypto().requestVerificationDM(user_id, room_id);
    await until("the other side to accept the verification", () => req.phase === VerificationPhase.Ready || req.phase === VerificationPhase.Cancelled);
    if (req.phase === VerificationPhase.Cancelled) throw new Error(`verification cancelled: ${req.cancellationCode}`);
    const verifier = await req.startVerification("m.sas.v1");
    return await showSas(req, verifier);
  },

  // Accepts the first incoming verification request, and returns the decimals it shows.
  async verify_accept() {
    const req = await until("an incoming verification request", () => state.incoming.shift());
    await req.accept();
    const verifier = await until("the verification to start", () => req.verifier);
    return await showSas(req, verifier);
  },

  // Confirms the shown SAS (the Go test compared both sides first) and waits for the end.
  async verify_confirm() {
    if (!state.sas) throw new Error("verify_confirm: no SAS shown");
    await state.sas.confirm();
    await state.verifyDone;
    state.sas = null;
    return {};
  },

  // How this device sees another user and device. With refresh, every tracked user's keys are
  // marked stale and downloaded again first, so the answer is the server's, not the cache's.
  async status({ user_id, device_id, refresh }) {
    const c = need();
    const crypto = c.getCrypto();
    if (refresh) {
      const seen = state.keysQueried;
      await crypto.markAllTrackedUsersAsDirty();
      // The next request loop sends /keys/query; any sync or send drives it.
      await until("a fresh /keys/query answer", async () => {
        await crypto.getUserDeviceInfo([user_id], true);
        return state.keysQueried > seen;
      });
      // The answer is processed after the response is counted: look once more after it.
      await crypto.getUserDeviceInfo([user_id], true);
    }
    const u = await crypto.getUserVerificationStatus(user_id);
    const devices = (await crypto.getUserDeviceInfo([user_id], true)).get(user_id) ?? new Map();
    let device = null;
    if (device_id) {
      const d = await crypto.getDeviceVerificationStatus(user_id, device_id);
      device = d && { cross_signing_verified: d.crossSigningVerified, signed_by_owner: d.signedByOwner, verified: d.isVerified() };
    }
    return {
      user_cross_signing_verified: u.isCrossSigningVerified(),
      user_was_verified: u.wasCrossSigningVerified(),
      devices: [...devices.keys()].sort(),
      device,
    };
  },

  // Server-side backup: version and number of sessions stored for the room.
  async backup_count({ room_id }) {
    const c = need();
    const version = await c.getCrypto().getActiveSessionBackupVersion();
    if (!version) return { version: null, sessions: 0 };
    const res = await c.http.authedRequest(sdk.Method.Get, `/room_keys/keys/${encodeURIComponent(room_id)}`, { version }, undefined, { prefix: sdk.ClientPrefix.V3 });
    return { version, sessions: Object.keys(res?.sessions ?? {}).length };
  },

  // A new device: loads the backup key from secret storage with the recovery key, restores.
  async restore({ recovery_key }) {
    const c = need();
    const crypto = c.getCrypto();
    state.recoveryKey = decodeRecoveryKey(recovery_key);
    await crypto.loadSessionBackupPrivateKeyFromSecretStorage();
    const check = await crypto.checkKeyBackupAndEnable();
    if (!check) throw new Error("restore: the server has no key backup");
    const res = await crypto.restoreKeyBackup();
    return { backup_version: check.backupInfo?.version ?? null, total: res.total, imported: res.imported };
  },

  // The room's whole history through /messages (back to m.room.create), each encrypted event
  // decrypted with what this device holds.
  async history({ room_id }) {
    const c = need();
    const out = [];
    let from = null;
    for (let page = 0; page < 100; page++) {
      const res = await c.createMessagesRequest(room_id, from, 100, sdk.Direction.Backward);
      for (const raw of res.chunk ?? []) {
        const ev = new sdk.MatrixEvent({ ...raw, room_id });
        let error = null;
        if (ev.getType() === "m.room.encrypted") {
          await c.decryptEventIfNeeded(ev);
          if (ev.isDecryptionFailure()) error = ev.decryptionFailureReason ?? "decryption failed";
        }
        out.push({ event_id: ev.getId(), type: ev.getType(), sender: ev.getSender(), body: eventBody(ev) ?? null, encrypted: ev.isEncrypted(), error });
      }
      if (!res.end || !(res.chunk ?? []).length) break;
      from = res.end;
    }
    out.reverse();
    return { events: out };
  },
};

async function showSas(req, verifier) {
  state.verifier = verifier;
  const shown = new Promise((resolve) => verifier.once(VerifierEvent.ShowSas, resolve));
  state.verifyDone = verifier.verify();
  state.verifyDone.catch((e) => log("verification failed:", e?.message ?? e));
  const sas = await Promise.race([
    shown,
    state.verifyDone.then(() => {
      throw new Error("verification ended before the SAS was shown");
    }),
  ]);
  state.sas = sas;
  req.on(VerificationRequestEvent.Change, () => log("verification phase", req.phase));
  return { decimals: sas.sas.decimal ?? null, emoji: (sas.sas.emoji ?? []).map((e) => e[1]) };
}

const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: `bad command line: ${e.message}` }) + "\n");
    return;
  }
  const fn = commands[msg.cmd];
  let answer;
  try {
    if (!fn) throw new Error(`unknown command ${JSON.stringify(msg.cmd)}`);
    answer = { id: msg.id, ok: true, result: await fn(msg) };
  } catch (e) {
    answer = { id: msg.id, ok: false, error: `${msg.cmd}: ${e?.message ?? e}` };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
});
rl.on("close", () => {
  state.client?.stopClient();
  process.exit(0);
});
process.on("unhandledRejection", (e) => log("unhandled rejection:", e?.message ?? e));
