// Usage: OPENPGPJS_MODULE=.../openpgp.mjs node verify.mjs SERVER_KEY.asc CERT.bin [ISO-DATE]
//
// Verifies with OpenPGP.js every certification the server key made on the
// ID-Cert, printing one line per certification with its notations. Exits 1
// unless there is at least one and all are valid at the date (default now).
// Used by TestOpenPGPJSVerifiesIDCert.
const openpgp = await import(process.env.OPENPGPJS_MODULE ?? 'openpgp');
const { readFileSync } = await import('node:fs');
const [serverFile, certFile, when] = process.argv.slice(2);
const date = when ? new Date(when) : new Date();
const server = await openpgp.readKey({ armoredKey: readFileSync(serverFile, 'utf8') });
const cert = await openpgp.readKey({ binaryKey: new Uint8Array(readFileSync(certFile)) });
let found = 0, bad = 0;
for (const user of cert.users) {
  for (const c of user.otherCertifications) {
    if (!c.issuerKeyID.equals(server.getKeyID())) continue;
    found++;
    try {
      await user.verifyCertificate(c, [server], date);
      const notes = Object.entries(c.notations || {}).map(([k, v]) => `${k}=${v}`);
      console.log(`valid ${user.userID.userID} ${notes.join(' ')}`);
    } catch (e) {
      bad++;
      console.log(`invalid ${user.userID.userID}: ${e.message}`);
    }
  }
}
if (found === 0) console.log('no certification by the server key');
process.exit(found > 0 && bad === 0 ? 0 : 1);
