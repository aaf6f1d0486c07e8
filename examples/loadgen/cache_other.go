//go:build !(linux && (amd64 || arm64))

package main

import "os"

// dropCache is a no-op on this system: the file stays cached.
func dropCache(*os.File) error { return nil }
