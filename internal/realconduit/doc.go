// Package realconduit runs a real, patched Conduit (the binary named by CONDUIT_BIN) for tests, and
// the whole migration from a real Synapse into it as an admin runs it (build tag `conduit`). Its
// recordings of what real Conduit sent and answered (testdata) and the shapes they are compared by
// are built without the tag, for the conformance test of internal/conduitsim in CI.
package realconduit
