// Package tb is the part of testing.TB that the simulators and fixture writers (shared by the
// tests and `shim demo`) use, so that the shipped binary does not link package testing.
package tb

// TB is what a helper needs of a test: *testing.T, *testing.B and testing.TB have it.
type TB interface {
	Helper()
	Error(args ...any)
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(f func())
	TempDir() string
}
