// Package conduitpatch holds the transition-matrix patches to Conduit (self-federation.patch for
// `next`, self-federation-v0.10.12.patch for v0.10.12) and the checks that keep each one a patch of
// added lines only, for the Conduit commit its header and the README name.
package conduitpatch
