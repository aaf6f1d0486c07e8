// Usage: node openpgp-verify.mjs SERVER_KEY_FILE ID_CERT_FILE [--date ISO8601]
//
// Verifies a polyproto ID-Cert with OpenPGP.js. SERVER_KEY_FILE holds the
// home server's public key, binary or ASCII-armored. ID_CERT_FILE holds the
// ID-Cert: the client's transferable public key in binary (what routes 8
// and 9 return after Base64 decoding) or armored.
//
// Every User ID certification issued by the server key (matched by issuer
// fingerprint, or key ID when the fingerprint subpacket is missing) is
// checked with User.verifyCertificate against the server key at --date
// (default: now), which checks the signature, its creation and expiry time
// and the server key's validity. Exit status 0 means there is at least one
// such certification and all of them are valid; it then prints one JSON
// object on stdout:
//
//   {"serverFingerprint","keyFingerprint","userID","created","expires",
//    "notations": {"session-id@polyproto.org": "...", "serial@polyproto.org": "..."}}
//
// Anything else exits 1 with the reason on stderr.

import * as openpgp from "openpgp";
import { fail, parseArgs, readBytes } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["date"]);
if (positional.length !== 2) fail("usage: openpgp-verify.mjs SERVER_KEY_FILE ID_CERT_FILE [--date ISO8601]");
const date = options.date ? new Date(options.date) : new Date();
if (Number.isNaN(date.getTime())) fail(`bad --date ${options.date}`);

async function readAnyKey(path) {
  const bytes = readBytes(path);
  const text = Buffer.from(bytes).toString("latin1");
  try {
    if (text.includes("-----BEGIN PGP ")) return await openpgp.readKey({ armoredKey: text });
    return await openpgp.readKey({ binaryKey: bytes });
  } catch (e) {
    fail(`cannot read ${path}: ${e.message}`);
  }
}

const serverKey = await readAnyKey(positional[0]);
const certKey = await readAnyKey(positional[1]);
if (certKey.isPrivate()) fail("the ID-Cert carries private key material");

const serverFpr = serverKey.getFingerprint().toLowerCase();
const serverKeyID = serverKey.getKeyID();

function issuedByServer(sig) {
  if (sig.issuerFingerprint) {
    return Buffer.from(sig.issuerFingerprint).toString("hex").toLowerCase() === serverFpr;
  }
  return sig.issuerKeyID.equals(serverKeyID);
}

const found = [];
for (const user of certKey.users) {
  for (const sig of user.otherCertifications) {
    if (!issuedByServer(sig)) continue;
    if (!user.userID) fail("the server certified a user attribute, not a User ID");
    try {
      const ok = await user.verifyCertificate(sig, [serverKey], date);
      if (ok !== true) fail(`certification of "${user.userID.userID}" not verifiable by the server key`);
    } catch (e) {
      fail(`certification of "${user.userID.userID}" by ${serverFpr} is not valid: ${e.message}`);
    }
    found.push({ user, sig });
  }
}
if (found.length === 0) fail(`no User ID certification issued by the server key ${serverFpr}`);

// Report the newest certification.
found.sort((a, b) => b.sig.created - a.sig.created);
const { user, sig } = found[0];
const notations = {};
for (const n of sig.rawNotations) {
  notations[n.name] = n.humanReadable ? new TextDecoder().decode(n.value) : Buffer.from(n.value).toString("hex");
}
const expires = sig.getExpirationTime();
process.stdout.write(
  JSON.stringify({
    serverFingerprint: serverFpr,
    keyFingerprint: certKey.getFingerprint().toLowerCase(),
    userID: user.userID.userID,
    certifications: found.length,
    created: sig.created.toISOString(),
    expires: expires === Infinity ? null : expires.toISOString(),
    notations,
  }) + "\n",
);
