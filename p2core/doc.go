// Package p2core is the domain of p2kit: the nouns and verbs of the
// polyproto-core home server (federation tokens, ID-Certs, server identity
// keys, MLS KeyPackages, sessions and events), the Store interfaces a storage
// backend implements, and the Service that performs every operation.
//
// p2core imports no storage and no HTTP code. Storage backends live in
// storage/*, the HTTP API in httpadapter.
package p2core
