// Usage: node mls-keypackages.mjs SEED_HEX COUNT STATE_FILE
//          [--identity ID] [--lifetime-days N]
//
// Makes COUNT KeyPackages with ts-mls for cipher suite 1
// (MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519) whose leaf signature key is
// the Ed25519 public key of the 32-byte private seed SEED_HEX, with a basic
// credential naming ID (default alice@home.localhost), ts-mls's default
// capabilities (which include GREASE values) and a lifetime from an hour ago
// to N days ahead (default 30).
//
// Prints each KeyPackage as standard Base64 of its TLS encoding (bare, not
// wrapped in an MLSMessage), one per line, and writes STATE_FILE, the JSON
// that mls-join.mjs needs to join a group as this member later:
//
//   {"suite": "...", "signaturePublicKey": hex, "signaturePrivateKey": hex,
//    "keyPackages": [{"keyPackage": b64, "initPrivateKey": b64, "hpkePrivateKey": b64}]}

import { writeFileSync } from "node:fs";
import { defaultCapabilities, generateKeyPackageWithKey } from "ts-mls";
import { verifyKeyPackage } from "ts-mls/keyPackage.js";
import { fail, fromHex, parseArgs, toBase64, toHex } from "./lib.mjs";
import { SUITE_NAME, ed25519PublicKey, encodeKP, lifetime, suiteImpl } from "./mls.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["identity", "lifetime-days"]);
if (positional.length !== 3) fail("usage: mls-keypackages.mjs SEED_HEX COUNT STATE_FILE [--identity ID] [--lifetime-days N]");
const seed = fromHex(positional[0]);
const count = Number(positional[1]);
if (!Number.isInteger(count) || count < 1 || count > 1000) fail(`bad count ${positional[1]}`);
const days = Number(options["lifetime-days"] ?? 30);
if (!Number.isInteger(days) || days < 1) fail(`bad --lifetime-days ${options["lifetime-days"]}`);

const impl = await suiteImpl();
const publicKey = ed25519PublicKey(seed);
const credential = { credentialType: "basic", identity: new TextEncoder().encode(options.identity ?? "alice@home.localhost") };
const state = {
  suite: SUITE_NAME,
  signaturePublicKey: toHex(publicKey),
  signaturePrivateKey: toHex(seed),
  keyPackages: [],
};
const lines = [];
for (let i = 0; i < count; i++) {
  const { publicPackage, privatePackage } = await generateKeyPackageWithKey(
    credential,
    defaultCapabilities(),
    lifetime(days),
    [],
    { signKey: seed, publicKey },
    impl,
  );
  if (!(await verifyKeyPackage(publicPackage, impl.signature))) fail("ts-mls made a KeyPackage it cannot verify");
  const b64 = toBase64(encodeKP(publicPackage));
  state.keyPackages.push({
    keyPackage: b64,
    initPrivateKey: toBase64(privatePackage.initPrivateKey),
    hpkePrivateKey: toBase64(privatePackage.hpkePrivateKey),
  });
  lines.push(b64);
}
writeFileSync(positional[2], JSON.stringify(state, null, 1), { mode: 0o600 });
process.stdout.write(lines.join("\n") + "\n");
