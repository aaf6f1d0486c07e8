// Usage: node mls-join.mjs STATE_FILE CLAIMED_KEYPACKAGE_B64
//
// Plays both ends of an MLS Add with ts-mls, cipher suite 1:
//
//  1. "bob" makes his own KeyPackage, creates a group, decodes the claimed
//     KeyPackage (standard Base64 of the bare TLS-encoded bytes, exactly as
//     the home server returned them), commits an Add of it and produces a
//     Welcome (with the ratchet tree in a GroupInfo extension).
//  2. The member (alice), whose private state mls-keypackages.mjs wrote to
//     STATE_FILE, finds the private keys of that KeyPackage, decodes the
//     Welcome from its wire encoding and joins the group.
//  3. Both sides must agree: same group ID, epoch, epoch authenticator,
//     exporter output and member list; alice's leaf must carry her
//     signature key; then one application message each way must decrypt.
//
// Exit status 0 means all of that held; it prints a JSON summary on stdout.
// Anything else exits 1 with the reason on stderr.

import { readFileSync } from "node:fs";
import {
  createApplicationMessage,
  createCommit,
  createGroup,
  decodeMlsMessage,
  defaultCapabilities,
  emptyPskIndex,
  encodeMlsMessage,
  generateKeyPackage,
  joinGroup,
  mlsExporter,
  processPrivateMessage,
} from "ts-mls";
import { bytesEqual, fail, fromBase64, fromHex, toBase64, toHex } from "./lib.mjs";
import { SUITE_NAME, decodeKP, encodeKP, lifetime, suiteImpl } from "./mls.mjs";

const args = process.argv.slice(2);
if (args.length !== 2) fail("usage: mls-join.mjs STATE_FILE CLAIMED_KEYPACKAGE_B64");
const state = JSON.parse(readFileSync(args[0], "utf8"));
if (state.suite !== SUITE_NAME) fail(`state is for ${state.suite}, not ${SUITE_NAME}`);
const claimedBytes = fromBase64(args[1]);

const impl = await suiteImpl();
const enc = new TextEncoder();
const dec = new TextDecoder();

// 1. bob: group creator and committer.
const claimed = decodeKP(claimedBytes);
if (claimed.cipherSuite !== SUITE_NAME) fail(`claimed KeyPackage is for ${claimed.cipherSuite}`);
if (!bytesEqual(encodeKP(claimed), claimedBytes)) fail("ts-mls does not re-encode the claimed KeyPackage byte for byte");

const bob = await generateKeyPackage(
  { credentialType: "basic", identity: enc.encode("bob@home.localhost") },
  defaultCapabilities(),
  lifetime(30),
  [],
  impl,
);
let bobGroup = await createGroup(enc.encode("p2kit-interop-group"), bob.publicPackage, bob.privatePackage, [], impl);
const commit = await createCommit(
  { state: bobGroup, cipherSuite: impl },
  { extraProposals: [{ proposalType: "add", add: { keyPackage: claimed } }], ratchetTreeExtension: true },
);
bobGroup = commit.newState;
if (commit.welcome === undefined) fail("ts-mls made no Welcome for the Add");
const welcomeWire = encodeMlsMessage({ version: "mls10", wireformat: "mls_welcome", welcome: commit.welcome });

// 2. alice: joins from the Welcome bytes with her stored private state.
const mine = state.keyPackages.find((k) => bytesEqual(fromBase64(k.keyPackage), claimedBytes));
if (mine === undefined) fail("the claimed KeyPackage is none of those in the state file");
const decodedWelcome = decodeMlsMessage(welcomeWire, 0);
if (decodedWelcome === undefined || decodedWelcome[0].wireformat !== "mls_welcome") fail("cannot decode the Welcome");
let aliceGroup;
try {
  aliceGroup = await joinGroup(
    decodedWelcome[0].welcome,
    claimed,
    {
      initPrivateKey: fromBase64(mine.initPrivateKey),
      hpkePrivateKey: fromBase64(mine.hpkePrivateKey),
      signaturePrivateKey: fromHex(state.signaturePrivateKey),
    },
    emptyPskIndex,
    impl,
  );
} catch (e) {
  fail(`joining from the Welcome failed: ${e.message}`);
}

// 3. Both sides agree.
const a = aliceGroup.groupContext;
const b = bobGroup.groupContext;
if (!bytesEqual(a.groupId, b.groupId)) fail("group IDs differ");
if (a.epoch !== b.epoch || a.epoch !== 1n) fail(`epochs differ or are not 1: alice ${a.epoch}, bob ${b.epoch}`);
if (!bytesEqual(aliceGroup.keySchedule.epochAuthenticator, bobGroup.keySchedule.epochAuthenticator)) {
  fail("epoch authenticators differ");
}
const exportA = await mlsExporter(aliceGroup.keySchedule.exporterSecret, "p2kit interop", enc.encode("ctx"), 32, impl);
const exportB = await mlsExporter(bobGroup.keySchedule.exporterSecret, "p2kit interop", enc.encode("ctx"), 32, impl);
if (!bytesEqual(exportA, exportB)) fail("exporter secrets differ");

const leaves = (g) => g.ratchetTree.filter((n) => n?.nodeType === "leaf").map((n) => toHex(n.leaf.signaturePublicKey));
const aliceLeaves = leaves(aliceGroup);
if (JSON.stringify(aliceLeaves) !== JSON.stringify(leaves(bobGroup))) fail("ratchet trees name different members");
if (aliceLeaves.length !== 2 || !aliceLeaves.includes(state.signaturePublicKey)) {
  fail(`alice's signature key ${state.signaturePublicKey} is not a member: ${aliceLeaves}`);
}

async function send(fromState, toState, text) {
  const sent = await createApplicationMessage(fromState, enc.encode(text), impl);
  const wire = encodeMlsMessage({ version: "mls10", wireformat: "mls_private_message", privateMessage: sent.privateMessage });
  const got = decodeMlsMessage(wire, 0);
  if (got === undefined || got[0].wireformat !== "mls_private_message") fail("cannot decode an application message");
  const r = await processPrivateMessage(toState, got[0].privateMessage, emptyPskIndex, impl);
  if (r.kind !== "applicationMessage") fail(`expected an application message, got ${r.kind}`);
  if (dec.decode(r.message) !== text) fail(`message garbled: ${dec.decode(r.message)}`);
  return [sent.newState, r.newState];
}
[bobGroup, aliceGroup] = await send(bobGroup, aliceGroup, "hello alice");
[aliceGroup, bobGroup] = await send(aliceGroup, bobGroup, "hello bob");

process.stdout.write(
  JSON.stringify({
    epoch: Number(a.epoch),
    epochAuthenticator: toBase64(aliceGroup.keySchedule.epochAuthenticator),
    exporter: toHex(exportA),
    members: aliceLeaves,
    welcomeBytes: welcomeWire.length,
  }) + "\n",
);
