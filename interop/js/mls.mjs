// ts-mls helpers shared by mls-keypackages.mjs and mls-join.mjs.

import { createPrivateKey, createPublicKey } from "node:crypto";
import { getCiphersuiteFromName, getCiphersuiteImpl } from "ts-mls";
import { decodeKeyPackage, encodeKeyPackage } from "ts-mls/keyPackage.js";
import { fail } from "./lib.mjs";

/** MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519, cipher suite 1. */
export const SUITE_NAME = "MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519";

export function suiteImpl() {
  return getCiphersuiteImpl(getCiphersuiteFromName(SUITE_NAME));
}

/** Returns the raw 32-byte Ed25519 public key of a 32-byte private seed. */
export function ed25519PublicKey(seed) {
  if (seed.length !== 32) fail(`an Ed25519 seed has 32 bytes, got ${seed.length}`);
  // PKCS#8 PrivateKeyInfo for Ed25519 (RFC 8410) is a fixed prefix plus the seed.
  const prefix = Buffer.from("302e020100300506032b657004220420", "hex");
  const priv = createPrivateKey({ key: Buffer.concat([prefix, Buffer.from(seed)]), format: "der", type: "pkcs8" });
  const jwk = createPublicKey(priv).export({ format: "jwk" });
  return new Uint8Array(Buffer.from(jwk.x, "base64url"));
}

/**
 * A lifetime that is current and short enough for any reasonable server
 * policy: from an hour ago (clock skew) to `days` days from now.
 */
export function lifetime(days) {
  const now = BigInt(Math.floor(Date.now() / 1000));
  return { notBefore: now - 3600n, notAfter: now + BigInt(days) * 86400n };
}

/** TLS-encodes a bare KeyPackage (RFC 9420 section 10). */
export function encodeKP(kp) {
  return encodeKeyPackage(kp);
}

/** Decodes a bare KeyPackage, refusing trailing bytes. */
export function decodeKP(bytes) {
  const r = decodeKeyPackage(bytes, 0);
  if (r === undefined) fail("ts-mls cannot decode the KeyPackage");
  const [kp, n] = r;
  if (n !== bytes.length) fail(`KeyPackage has ${bytes.length - n} trailing bytes`);
  return kp;
}
