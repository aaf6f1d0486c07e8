// Usage: node openpgp-genkey.mjs EMAIL [--name NAME] [--private-out FILE]
//
// Generates an OpenPGP key with OpenPGP.js defaults (v4, EdDSA legacy
// Ed25519 primary key plus a cv25519 encryption subkey) whose User ID is
// "NAME <EMAIL>" (NAME defaults to Alice) and prints the ASCII-armored
// public key on stdout. With --private-out the armored, unencrypted private
// key is written to FILE.

import { writeFileSync } from "node:fs";
import * as openpgp from "openpgp";
import { fail, parseArgs } from "./lib.mjs";

const { positional, options } = parseArgs(process.argv.slice(2), ["name", "private-out"]);
if (positional.length !== 1) fail("usage: openpgp-genkey.mjs EMAIL [--name NAME] [--private-out FILE]");

const { privateKey, publicKey } = await openpgp.generateKey({
  userIDs: [{ name: options.name ?? "Alice", email: positional[0] }],
  format: "armored",
});
if (options["private-out"]) writeFileSync(options["private-out"], privateKey, { mode: 0o600 });
process.stdout.write(publicKey);
