// Package conduitpatch holds the transition-matrix patch to Conduit (self-federation.patch) and the
// checks that keep it a patch of added lines only, for the Conduit commit its README names.
package conduitpatch
