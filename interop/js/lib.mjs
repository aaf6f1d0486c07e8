// Helpers shared by the interop scripts. Every script prints its result on
// stdout and reports failures on stderr with a non-zero exit code, so the Go
// tests can assert on both.

import { readFileSync } from "node:fs";

/** Prints msg on stderr and exits with status 1. */
export function fail(msg) {
  process.stderr.write(`${process.argv[1].split("/").pop()}: ${msg}\n`);
  process.exit(1);
}

/**
 * Parses "--name value" options after the positional arguments.
 * Returns { positional: [...], options: {name: value} }. An option that
 * is not in `known` is an error.
 */
export function parseArgs(argv, known) {
  const positional = [];
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const name = a.slice(2);
      if (!known.includes(name)) fail(`unknown option ${a}`);
      if (i + 1 >= argv.length) fail(`option ${a} needs a value`);
      options[name] = argv[++i];
    } else {
      positional.push(a);
    }
  }
  return { positional, options };
}

/** Reads a whole file as bytes. */
export function readBytes(path) {
  return new Uint8Array(readFileSync(path));
}

export function toBase64(bytes) {
  return Buffer.from(bytes).toString("base64");
}

/** Decodes standard Base64, rejecting anything that does not round-trip. */
export function fromBase64(s) {
  const t = s.trim();
  const b = Buffer.from(t, "base64");
  if (b.toString("base64") !== t) fail("input is not canonical standard Base64");
  return new Uint8Array(b);
}

export function toHex(bytes) {
  return Buffer.from(bytes).toString("hex");
}

export function fromHex(s) {
  if (!/^([0-9a-fA-F]{2})*$/.test(s)) fail(`not a hex string: ${s}`);
  return new Uint8Array(Buffer.from(s, "hex"));
}

export function bytesEqual(a, b) {
  return a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}
