package eventcache

import "slices"

// Status is what the checks found about a stored event, and so whether it may be served.
type Status string

// The statuses of stored events.
const (
	// StatusVerified: signatures and content hash checked.
	StatusVerified Status = "verified"
	// StatusRedacted: Synapse served the event already redacted (a redaction applied, or history
	// Synapse hides from itself); its signatures hold, its content hash cannot. Served as received.
	StatusRedacted Status = "redacted"
	// StatusPruned: the content did not match its hash although it was not redacted (changed
	// after signing); the shim stores and serves the redacted form, which its signatures cover,
	// so a receiver keeps the event in the DAG but never sees the altered content.
	StatusPruned Status = "pruned"
	// StatusRejected: a signature is missing or wrong; kept for the archive's accounting, never served.
	StatusRejected Status = "rejected"
)

// servedStatuses are the statuses that may be served: the default of Options.ServeStatuses.
var servedStatuses = []Status{StatusVerified, StatusRedacted, StatusPruned}

// Servable reports whether an event of status s may be served.
func (s Status) Servable() bool { return slices.Contains(servedStatuses, s) }
