// Package interop proves that independent implementations work with p2kit
// through the real example home server (examples/homeserver), run as a
// separate process on a loopback port:
//
//   - GnuPG 2.2 makes keys, and checks the ID-Certs the server issues for
//     them (signature, notations, expiry);
//   - OpenPGP.js makes keys and verifies ID-Certs, its own and GnuPG's;
//   - ts-mls makes KeyPackages with the certified Ed25519 key, which go
//     through the KeyPackage routes byte for byte, and a second ts-mls
//     member adds the claimed KeyPackage to a group and the owner joins it
//     from the Welcome.
//
// The package has tests only. They need gpg, node and the pinned npm
// packages (bash interop/setup.sh); without them they skip, unless
// P2KIT_INTEROP=1, which CI sets, makes that a failure. See README.md.
package interop
