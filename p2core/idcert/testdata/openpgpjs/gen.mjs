// Generates the OpenPGP.js test keys of this directory.
//
//   cd "$(mktemp -d)" && npm install openpgp@6.3.2
//   OPENPGPJS_MODULE="$PWD/node_modules/openpgp/dist/node/openpgp.mjs" \
//     node /path/to/gen.mjs legacy > alice-openpgpjs-legacy.asc
//
// Variants: legacy (v4 EdDSA Ed25519 + cv25519 subkey, OpenPGP.js's
// default), v6 (v6 Ed25519 + X25519 subkey), p256 (v4 ECDSA P-256 + ECDH).
const openpgp = await import(process.env.OPENPGPJS_MODULE ?? 'openpgp');
const variant = process.argv[2];
const opts = { userIDs: [{ name: 'Alice', email: 'alice@example.com' }], format: 'armored' };
if (variant === 'legacy') { opts.type = 'ecc'; opts.curve = 'curve25519Legacy'; }
else if (variant === 'v6') { opts.type = 'curve25519'; opts.config = { v6Keys: true }; }
else if (variant === 'p256') { opts.type = 'ecc'; opts.curve = 'nistP256'; }
else throw new Error('unknown variant ' + variant);
const { publicKey } = await openpgp.generateKey(opts);
process.stdout.write(publicKey);
