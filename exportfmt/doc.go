// Package exportfmt is the format of an export directory that `shim export` writes and `shim
// import` and `shim verify` read: the manifest, the user and room files, their names, and reading
// a listed file back checked against the manifest's SHA-256 and size.
package exportfmt
