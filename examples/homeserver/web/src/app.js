// The p2kit example home server's web client: the whole polyproto-core
// client flow in one page, with OpenPGP.js for the identity key and ID-Cert
// checks and ts-mls for KeyPackages and the group. build.sh bundles this
// file with its pinned dependencies into ../static/app.js.
//
// Everything secret (the OpenPGP private key, KeyPackage private keys, MLS
// group state) lives in this tab's memory only.

import * as openpgp from "openpgp";
import {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackageWithKey,
  getCiphersuiteFromName,
  getCiphersuiteImpl,
  joinGroup,
  processPrivateMessage,
} from "ts-mls";
import { decodeKeyPackage, encodeKeyPackage, makeKeyPackageRef, verifyKeyPackage } from "ts-mls/keyPackage.js";

/** MLS cipher suite 1, the one whose signature key is an Ed25519 key like the certified OpenPGP key. */
const SUITE = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";
const SUITE_ID = 1;
const NOTE_SESSION = "session-id@polyproto.org";
const NOTE_SERIAL = "serial@polyproto.org";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Everything the tab knows. */
const S = {
  token: null, userID: null, fid: null, sessionID: null,
  key: null, // {privateKey, publicArmored, seed, pub, fingerprint}
  cert: null, // verified facts of this session's ID-Cert
  serverKeys: new Map(), // fingerprint -> openpgp key
  kps: [], // {ref, publicPackage, privatePackage}
  peer: null, // {userID, fid, certifiedKeys: Set(hex), kps: [KeyPackage]}
  groups: new Map(), // group ID hex -> {state, members: Map(userID -> fid)}
  active: null, // group ID hex messages go to
  events: null, // EventSource
  inbox: Promise.resolve(), // relayed objects are handled one at a time, in order
};

let impl; // ts-mls's CiphersuiteImpl for SUITE
async function suite() {
  impl ??= await getCiphersuiteImpl(getCiphersuiteFromName(SUITE));
  return impl;
}

// ---- small helpers ---------------------------------------------------------

const $ = (id) => document.getElementById(id);

function toB64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
}
function fromB64(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
const short = (hex) => (hex.length > 16 ? hex.slice(0, 16) + "…" : hex);
const when = (d) => (d ? new Date(d).toISOString().replace(".000Z", "Z") : "never");

/** Shows a step's progress: state is idle, busy, ok or error. */
function status(id, state, text) {
  const el = $(id);
  el.dataset.state = state;
  el.textContent = text;
}

/** An error answer of the server: its P2CORE_* code and message as sent. */
class APIError extends Error {
  constructor(status, code, message) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** Calls the server; answers the decoded JSON body (null when empty) or throws APIError. */
async function api(method, path, body) {
  const headers = {};
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      if (!r.ok) throw new APIError(r.status, "HTTP_" + r.status, text.trim());
      throw new Error(`${method} ${path}: the answer is not JSON`);
    }
  }
  if (!r.ok) {
    if (data && typeof data.error === "string") throw new APIError(r.status, data.error, data.message ?? "");
    throw new APIError(r.status, "HTTP_" + r.status, text.trim());
  }
  return data;
}

/** Runs a step: busy while it works, its result or error shown as is. */
function step(id, busyText, fn) {
  return async (ev) => {
    ev?.preventDefault?.();
    status(id, "busy", busyText);
    try {
      const done = await fn(ev);
      status(id, "ok", done);
    } catch (e) {
      console.error(e);
      status(id, "error", e instanceof APIError ? e.message : `Error: ${e.message}`);
    }
    refreshButtons();
  };
}

function refreshButtons() {
  const in_ = S.token !== null;
  $("b-logout").disabled = !in_;
  $("b-genkey").disabled = !in_;
  $("b-idcert").disabled = !in_ || !S.key;
  $("b-upload").disabled = !in_ || !S.key;
  $("b-lastresort").disabled = !in_ || !S.key;
  $("b-supply").disabled = !in_;
  $("b-token").disabled = !in_;
  $("b-lookup").disabled = !in_;
  $("b-claim").disabled = !in_ || !S.peer;
  $("b-group").disabled = !in_ || !S.cert || !S.peer || S.peer.kps.length === 0;
  $("b-send").disabled = !in_ || S.active === null;
  $("who").textContent = in_ ? `${S.fid} · user ${S.userID} · session ${S.sessionID}` : "not logged in";
}

// ---- 1. account --------------------------------------------------------------

async function login(username, password) {
  const r = await api("POST", "/login", { username, password });
  Object.assign(S, { token: r.token, userID: r.user_id, fid: r.fid, sessionID: r.session_id });
  Object.assign(S, { key: null, cert: null, kps: [], peer: null, active: null });
  S.groups.clear();
  openEvents();
  refreshSupply();
  status("st-key", "idle", "Generate this session's OpenPGP key.");
  return `Logged in as ${r.fid}: session ${r.session_id}.`;
}

const onAccount = step("st-account", "Working…", async (ev) => {
  const username = $("username").value.trim().toLowerCase();
  const password = $("password").value;
  if (ev.submitter?.dataset.action === "register") {
    status("st-account", "busy", "Registering…");
    const r = await api("POST", "/register", { username, password });
    status("st-account", "busy", `Registered ${r.fid} (user ${r.user_id}); logging in…`);
  } else {
    status("st-account", "busy", "Logging in…");
  }
  return await login(username, password);
});

const onLogout = step("st-account", "Logging out…", async () => {
  await api("POST", "/logout");
  S.events?.close();
  S.token = null;
  $("ev-state").textContent = "offline";
  $("ev-state").classList.remove("live");
  return "Logged out: the session's token and KeyPackages are gone.";
});

// ---- 2. key and ID-Cert -----------------------------------------------------

const onGenKey = step("st-key", "Generating an OpenPGP key with OpenPGP.js…", async () => {
  // OpenPGP.js's default key: v4, EdDSA (Ed25519) primary key plus a
  // Curve25519 encryption subkey. The primary key is also the MLS
  // signature key, so the ID-Cert certifies the KeyPackages.
  const { privateKey, publicKey } = await openpgp.generateKey({
    userIDs: [{ name: S.fid.split("@")[0], email: S.fid }],
    format: "object",
  });
  const pkt = privateKey.keyPacket;
  if (pkt.algorithm !== openpgp.enums.publicKey.eddsaLegacy) throw new Error("OpenPGP.js made a key that is not Ed25519");
  const seed = pkt.privateParams.seed;
  const pub = pkt.publicParams.Q.slice(1); // 0x40 || 32-byte Ed25519 key
  S.key = { privateKey, publicArmored: publicKey.armor(), seed, pub, fingerprint: privateKey.getFingerprint() };
  S.cert = null;
  $("cert").hidden = true;
  return `Key ${S.key.fingerprint} made for "${privateKey.getUserIDs()[0]}". Now get its ID-Cert.`;
});

/** Returns the server's public key valid at `at` (Unix seconds; 0 for now), from route 10. */
async function serverKey(at) {
  const b64 = await api("GET", "/p2core/key/server" + (at ? `?timestamp=${at}` : ""));
  const key = await openpgp.readKey({ binaryKey: fromB64(b64) });
  S.serverKeys.set(key.getFingerprint(), key);
  return key;
}

/**
 * Verifies an ID-Cert (binary transferable public key) in the browser: it
 * must carry a User ID certification by the home server's key that
 * OpenPGP.js verifies now. Answers the newest such certification's facts
 * and the certified key's MLS signature key (raw Ed25519 public key).
 */
async function verifyIDCert(certBytes) {
  const cert = await openpgp.readKey({ binaryKey: certBytes });
  if (cert.isPrivate()) throw new Error("the ID-Cert carries private key material");
  const current = await serverKey(0);
  const found = [];
  for (const user of cert.users) {
    for (const sig of user.otherCertifications) {
      let server = current;
      const fpr = sig.issuerFingerprint ? toHex(sig.issuerFingerprint) : null;
      if (fpr === null) {
        if (!sig.issuerKeyID.equals(current.getKeyID())) continue;
      } else if (fpr !== current.getFingerprint()) {
        // Perhaps issued by an earlier server key: fetch the key of that time.
        server = S.serverKeys.get(fpr) ?? (await serverKey(Math.floor(sig.created.getTime() / 1000)));
        if (server.getFingerprint() !== fpr) continue; // another issuer
      }
      if (!user.userID) throw new Error("the server certified a user attribute, not a User ID");
      const ok = await user.verifyCertificate(sig, [server], new Date());
      if (ok !== true) throw new Error(`the certification of "${user.userID.userID}" does not verify`);
      found.push({ user, sig, server });
    }
  }
  if (found.length === 0) throw new Error("no certification by the server's key");
  found.sort((a, b) => b.sig.created - a.sig.created);
  const { user, sig, server: issuer } = found[0];
  const notes = {};
  for (const n of sig.rawNotations) notes[n.name] = n.humanReadable ? dec.decode(n.value) : toHex(n.value);
  const pkt = cert.keyPacket;
  if (pkt.algorithm !== openpgp.enums.publicKey.eddsaLegacy && pkt.algorithm !== openpgp.enums.publicKey.ed25519) {
    throw new Error("the certified key is not an Ed25519 key, so it cannot sign MLS cipher suite 1");
  }
  const mlsKey = pkt.algorithm === openpgp.enums.publicKey.ed25519 ? pkt.publicParams.A : pkt.publicParams.Q.subarray(1);
  const expires = sig.getExpirationTime();
  return {
    fingerprint: cert.getFingerprint(),
    userID: user.userID.userID,
    email: user.userID.email,
    issuer: issuer.getFingerprint(),
    serial: notes[NOTE_SERIAL] ?? "(none)",
    session: notes[NOTE_SESSION] ?? "(none)",
    created: sig.created,
    expires: expires === Infinity ? null : expires,
    mlsKey,
  };
}

const onIDCert = step("st-key", "Asking the server for an ID-Cert (route 8)…", async () => {
  const b64 = await api("POST", "/p2core/key/user/@me", S.key.publicArmored);
  status("st-key", "busy", "Verifying the ID-Cert against the server key (route 10)…");
  const c = await verifyIDCert(fromB64(b64));
  if (c.fingerprint !== S.key.fingerprint) throw new Error("the ID-Cert is for another key");
  if (c.session !== S.sessionID) throw new Error(`the ID-Cert names session ${c.session}, not ${S.sessionID}`);
  if (!eq(c.mlsKey, S.key.pub)) throw new Error("the certified key is not this tab's key");
  S.cert = c;
  $("c-fpr").textContent = c.fingerprint;
  $("c-uid").textContent = c.userID;
  $("c-issuer").textContent = c.issuer;
  $("c-serial").textContent = c.serial;
  $("c-session").textContent = c.session;
  $("c-created").textContent = when(c.created);
  $("c-expires").textContent = when(c.expires);
  $("cert").hidden = false;
  return `ID-Cert verified in the browser: issued by server key ${short(c.issuer)}, serial ${c.serial}, for this session, expires ${when(c.expires)}.`;
});

// ---- 3. KeyPackages -----------------------------------------------------------

/** MLS lifetime: from an hour ago (clock skew) to 30 days, never past the ID-Cert. */
function lifetime() {
  const now = Math.floor(Date.now() / 1000);
  let end = now + 30 * 86400;
  if (S.cert?.expires) end = Math.min(end, Math.floor(S.cert.expires.getTime() / 1000) - 60);
  return { notBefore: BigInt(now - 3600), notAfter: BigInt(end) };
}

/** Makes one KeyPackage signed by this tab's certified key and keeps its private keys. */
async function makeKeyPackage() {
  const cs = await suite();
  const credential = { credentialType: "basic", identity: enc.encode(S.fid) };
  const kp = await generateKeyPackageWithKey(credential, defaultCapabilities(), lifetime(), [], { signKey: S.key.seed, publicKey: S.key.pub }, cs);
  const ref = await makeKeyPackageRef(kp.publicPackage, cs.hash);
  return { ref, ...kp };
}

const onUpload = step("st-kp", "Generating KeyPackages with ts-mls…", async () => {
  const n = Number($("kp-count").value);
  if (!Number.isInteger(n) || n < 1 || n > 100) throw new Error("count must be 1 to 100");
  const made = [];
  for (let i = 0; i < n; i++) made.push(await makeKeyPackage());
  status("st-kp", "busy", `Uploading ${n} KeyPackages (route 12)…`);
  await api("POST", "/p2core/keypackage/@me", made.map((k) => toB64(encodeKeyPackage(k.publicPackage))));
  S.kps.push(...made);
  await refreshSupply();
  return `Uploaded ${n} KeyPackages signed by key ${short(S.key.fingerprint)}.`;
});

const onLastResort = step("st-kp", "Generating a last-resort KeyPackage…", async () => {
  const k = await makeKeyPackage();
  await api("PUT", "/p2core/keypackage_lr", toB64(encodeKeyPackage(k.publicPackage)));
  S.kps.push(k);
  await refreshSupply();
  return "Last-resort KeyPackage set (route 13): handed out when the others run out.";
});

async function refreshSupply() {
  try {
    const s = await api("GET", "/p2core/keypackage/@me/status");
    $("supply").textContent = `${s.available} available` + (s.last_resort ? ", last resort set" : "") +
      (s.last_resort_used ? ", last resort used" : "") + (s.low ? " (low)" : "");
    $("supply").dataset.available = String(s.available);
  } catch (e) {
    $("supply").textContent = e.message;
  }
}

// ---- 4. federation token ------------------------------------------------------

const onToken = step("st-token", "Asking for a federation token (route 1)…", async () => {
  const server = $("token-server").value.trim();
  const tok = await api("POST", "/p2core/token", { server });
  $("token").textContent = tok;
  $("token").hidden = false;
  return `Token for ${server}: give it to that server to log in there; it works once, within 5 minutes.`;
});

// ---- 5. another user ----------------------------------------------------------

/** Verifies a user's current ID-Certs (route 9); answers their certified MLS keys. */
async function certifiedKeys(userID, fid, list) {
  const certs = await api("GET", `/p2core/key/user/${userID}`);
  const keys = new Set();
  list?.replaceChildren();
  for (const b64 of certs) {
    const li = document.createElement("li");
    try {
      const c = await verifyIDCert(fromB64(b64));
      if (c.email !== fid) throw new Error(`the ID-Cert names ${c.userID}, not ${fid}`);
      keys.add(toHex(c.mlsKey));
      li.className = "ok";
      li.textContent = `ID-Cert of session ${c.session}, serial ${c.serial}, key ${short(c.fingerprint)}, expires ${when(c.expires)}`;
    } catch (e) {
      li.className = "bad";
      li.textContent = `an ID-Cert that does not verify: ${e.message}`;
    }
    list?.append(li);
  }
  return keys;
}

const onLookup = step("st-peer", "Looking up the user…", async () => {
  const name = $("peer").value.trim().toLowerCase();
  S.peer = null;
  $("peer-kps").replaceChildren();
  const u = await api("GET", `/demo/users/${encodeURIComponent(name)}`);
  status("st-peer", "busy", `Fetching and verifying ${u.fid}'s ID-Certs (route 9)…`);
  const keys = await certifiedKeys(u.user_id, u.fid, $("peer-certs"));
  S.peer = { userID: u.user_id, fid: u.fid, certifiedKeys: keys, kps: [] };
  if (keys.size === 0) return `${u.fid} (user ${u.user_id}) has no current ID-Cert that verifies.`;
  return `${u.fid} (user ${u.user_id}): ${keys.size} certified session key(s). Now claim their KeyPackages.`;
});

const onClaim = step("st-peer", "Claiming KeyPackages (route 14)…", async () => {
  const p = S.peer;
  const got = await api("GET", `/p2core/keypackage/${p.userID}?cipher_suite=${SUITE_ID}`);
  // Certs may have changed since the look-up: check against the current ones.
  p.certifiedKeys = await certifiedKeys(p.userID, p.fid, $("peer-certs"));
  const cs = await suite();
  const list = $("peer-kps");
  list.replaceChildren();
  p.kps = [];
  for (const b64 of got) {
    const li = document.createElement("li");
    try {
      const bytes = fromB64(b64);
      const r = decodeKeyPackage(bytes, 0);
      if (r === undefined || r[1] !== bytes.length) throw new Error("does not decode");
      const kp = r[0];
      if (kp.cipherSuite !== SUITE) throw new Error(`cipher suite ${kp.cipherSuite}`);
      if (!(await verifyKeyPackage(kp, cs.signature))) throw new Error("its signature does not verify");
      const sigKey = toHex(kp.leafNode.signaturePublicKey);
      if (!p.certifiedKeys.has(sigKey)) throw new Error(`signature key ${short(sigKey)} is certified by none of ${p.fid}'s current ID-Certs`);
      const who = kp.leafNode.credential.credentialType === "basic" ? dec.decode(kp.leafNode.credential.identity) : "?";
      if (who !== p.fid) throw new Error(`its credential names ${who}, not ${p.fid}`);
      p.kps.push(kp);
      li.className = "ok";
      li.textContent = `KeyPackage signed by certified key ${short(sigKey)} (${who})`;
    } catch (e) {
      li.className = "bad";
      li.textContent = `KeyPackage refused: ${e.message}`;
    }
    list.append(li);
  }
  if (got.length === 0) throw new Error(`${p.fid} has no KeyPackages to claim`);
  if (p.kps.length !== got.length) throw new Error(`${got.length - p.kps.length} of ${got.length} claimed KeyPackages failed the check`);
  return `Claimed ${got.length} KeyPackage(s); each is signed by a key one of ${p.fid}'s current ID-Certs certifies.`;
});

// ---- 6. MLS group -------------------------------------------------------------

const onGroup = step("st-group", "Creating the MLS group…", async () => {
  const cs = await suite();
  const p = S.peer;
  const mine = await makeKeyPackage(); // this tab's leaf, signed by the certified key
  const groupID = crypto.getRandomValues(new Uint8Array(16));
  let state = await createGroup(groupID, mine.publicPackage, mine.privatePackage, [], cs);
  const commit = await createCommit(
    { state, cipherSuite: cs },
    { extraProposals: p.kps.map((keyPackage) => ({ proposalType: "add", add: { keyPackage } })), ratchetTreeExtension: true },
  );
  state = commit.newState;
  if (!commit.welcome) throw new Error("ts-mls made no Welcome");
  const welcome = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: commit.welcome });
  const gid = toHex(groupID);
  S.groups.set(gid, { state, members: new Map([[p.userID, p.fid]]) });
  S.active = gid;
  status("st-group", "busy", `Sending the Welcome to ${p.fid} through the demo relay…`);
  await api("POST", `/demo/relay/${p.userID}`, { kind: "welcome", group: gid, welcome: toB64(welcome) });
  p.kps = []; // each KeyPackage is used once
  return `Group ${short(gid)} created with ${p.fid} (epoch ${state.groupContext.epoch}); Welcome sent. Send a message.`;
});

const onSend = step("st-group", "Encrypting…", async () => {
  const text = $("message").value;
  if (!text) throw new Error("write a message first");
  const g = S.groups.get(S.active);
  const cs = await suite();
  const out = await createApplicationMessage(g.state, enc.encode(text), cs);
  g.state = out.newState;
  const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: out.privateMessage });
  for (const userID of g.members.keys()) {
    await api("POST", `/demo/relay/${userID}`, { kind: "mls", group: S.active, message: toB64(wire) });
  }
  showMessage("mine", S.fid, text);
  $("message").value = "";
  return `Sent, encrypted for group ${short(S.active)} (${wire.length} bytes on the wire).`;
});

function showMessage(cls, from, text) {
  const li = document.createElement("li");
  li.className = cls;
  const f = document.createElement("span");
  f.className = "from";
  f.textContent = from;
  li.append(f, document.createTextNode(text));
  $("messages").append(li);
}

/** Joins a group from a relayed Welcome, if one of this tab's KeyPackages is in it. */
async function onWelcome(ev, body) {
  const cs = await suite();
  const m = decodeMlsMessage(fromB64(body.welcome), 0);
  if (m === undefined || m[0].wireformat !== "mls_welcome") throw new Error("a relayed Welcome that does not decode");
  const welcome = m[0].welcome;
  const mine = S.kps.find((k) => welcome.secrets.some((s) => eq(s.newMember, k.ref)));
  if (mine === undefined) {
    status("st-group", "idle", `A Welcome from ${ev.from_fid} for another session of this user.`);
    return;
  }
  status("st-group", "busy", `Joining ${ev.from_fid}'s group from the Welcome…`);
  const state = await joinGroup(welcome, mine.publicPackage, mine.privatePackage, emptyPskIndex, cs);
  S.kps = S.kps.filter((k) => k !== mine);
  // Every other member must be certified by its user's current ID-Certs;
  // the sender's user is known from the relay.
  const keys = await certifiedKeys(ev.from, ev.from_fid, null);
  for (const n of state.ratchetTree) {
    if (n?.nodeType !== "leaf") continue;
    const k = toHex(n.leaf.signaturePublicKey);
    if (k === toHex(S.key.pub)) continue;
    if (!keys.has(k)) throw new Error(`a member's key ${short(k)} is certified by none of ${ev.from_fid}'s ID-Certs`);
  }
  const gid = toHex(state.groupContext.groupId);
  S.groups.set(gid, { state, members: new Map([[ev.from, ev.from_fid]]) });
  S.active = gid;
  refreshSupply();
  status("st-group", "ok", `Joined ${ev.from_fid}'s group ${short(gid)} from the Welcome (epoch ${state.groupContext.epoch}); every member's key is certified.`);
}

/** Decrypts a relayed MLS application message. */
async function onMLS(ev, body) {
  const g = S.groups.get(body.group);
  if (!g) throw new Error(`a message for unknown group ${short(body.group)}`);
  const m = decodeMlsMessage(fromB64(body.message), 0);
  if (m === undefined || m[0].wireformat !== "mls_private_message") throw new Error("a relayed message that does not decode");
  const r = await processPrivateMessage(g.state, m[0].privateMessage, emptyPskIndex, await suite());
  g.state = r.newState;
  if (r.kind !== "applicationMessage") return;
  showMessage("theirs", ev.from_fid, dec.decode(r.message));
  status("st-group", "ok", `Decrypted a message from ${ev.from_fid} in group ${short(body.group)}.`);
}

// ---- events ---------------------------------------------------------------------

/** Opens /events with a one-time ticket (EventSource cannot send a bearer token). */
async function openEvents() {
  S.events?.close();
  const badge = $("ev-state");
  try {
    const t = await api("POST", "/events/ticket");
    const es = new EventSource(`/events?ticket=${encodeURIComponent(t.ticket)}`);
    S.events = es;
    es.onopen = () => {
      badge.textContent = "live";
      badge.classList.add("live");
    };
    es.onerror = () => {
      badge.textContent = "reconnecting";
      badge.classList.remove("live");
      // The ticket is spent: reconnect with a new one while logged in.
      es.close();
      if (S.events === es && S.token) setTimeout(() => S.events === es && openEvents(), 2000);
    };
    for (const type of ["NEW_SESSION", "CLIENT_KEY_CHANGE", "SERVER_KEY_CHANGE", "LOW_KEY_PACKAGES", "FEDERATION_TOKEN_ISSUED", "DEMO_RELAY"]) {
      es.addEventListener(type, (e) => onEvent(type, e));
    }
  } catch (e) {
    badge.textContent = "offline: " + e.message;
  }
}

function onEvent(type, e) {
  let data;
  try {
    data = JSON.parse(e.data);
  } catch {
    data = e.data;
  }
  const li = document.createElement("li");
  const b = document.createElement("b");
  b.textContent = type;
  const shown = type === "DEMO_RELAY" ? { from: data.from_fid, kind: data.body?.kind, group: data.body?.group } : data;
  let text = JSON.stringify(shown);
  if (text.length > 300) text = text.slice(0, 300) + "…";
  li.append(`${new Date().toLocaleTimeString()} #${e.lastEventId} `, b, " " + text);
  li.dataset.type = type;
  $("event-log").prepend(li);
  if (type === "LOW_KEY_PACKAGES") refreshSupply();
  if (type === "DEMO_RELAY") {
    S.inbox = S.inbox.then(async () => {
      try {
        if (data.body?.kind === "welcome") await onWelcome(data, data.body);
        else if (data.body?.kind === "mls") await onMLS(data, data.body);
      } catch (err) {
        console.error(err);
        status("st-group", "error", `Error: ${err.message}`);
      }
      refreshButtons();
    });
  }
}

// ---- wiring -----------------------------------------------------------------------

$("f-account").addEventListener("submit", onAccount);
$("b-logout").addEventListener("click", onLogout);
$("b-genkey").addEventListener("click", onGenKey);
$("b-idcert").addEventListener("click", onIDCert);
$("b-upload").addEventListener("click", onUpload);
$("b-lastresort").addEventListener("click", onLastResort);
$("b-supply").addEventListener("click", () => refreshSupply());
$("f-token").addEventListener("submit", onToken);
$("f-lookup").addEventListener("submit", onLookup);
$("b-claim").addEventListener("click", onClaim);
$("b-group").addEventListener("click", onGroup);
$("f-send").addEventListener("submit", onSend);
setInterval(() => S.token && refreshSupply(), 15000);
refreshButtons();
if (!window.isSecureContext || !crypto.subtle) {
  // WebCrypto (Ed25519, AES-GCM, HKDF) exists only in secure contexts.
  status("st-account", "error", "This page needs a secure context for WebCrypto: open it over https://, or as http://127.0.0.1 or http://localhost on this machine.");
}
document.body.dataset.ready = "1";
