// Package realconduit runs a real, patched Conduit (the binary named by CONDUIT_BIN) for tests,
// and the whole migration from a real Synapse into it as an admin runs it; everything but this
// comment is behind the build tag `conduit`.
package realconduit
