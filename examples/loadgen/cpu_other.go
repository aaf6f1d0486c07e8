//go:build !unix

package main

import "time"

// selfCPU is unknown on this system: CPU columns read 0.
func selfCPU() time.Duration { return 0 }

// syncAll is a no-op on this system.
func syncAll() {}
