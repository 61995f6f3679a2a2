// Package preflight checks a running Synapse before it is moved to Conduit: each check is a small
// function that returns findings (blockers, warnings, information), and a Report gathers them
// with the server's counts and the exit status `shim check` ends with.
package preflight

import (
	"context"
	"errors"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// Admin is the part of Synapse's admin API the checks read; *synapseclient.AdminClient has it.
type Admin interface {
	ServerVersion(ctx context.Context) (*synapseclient.ServerVersionInfo, error)
	AdminUserID(ctx context.Context) (string, error)
	AllUsers(ctx context.Context) ([]synapseclient.UserSummary, error)
	SearchUsers(ctx context.Context, term string) ([]synapseclient.SearchUser, error)
	AllRooms(ctx context.Context) ([]synapseclient.RoomSummary, error)
	ForwardExtremities(ctx context.Context, roomID string) ([]synapseclient.ForwardExtremity, error)
	LocalMediaTotals(ctx context.Context) (*synapseclient.MediaTotals, error)
}

// Federation is the part of Synapse's federation API the checks read; *synapseclient.FederationClient has it.
type Federation interface {
	Version(ctx context.Context) (*synapseclient.FederationVersion, error)
	ServerKeys(ctx context.Context) (*synapseclient.ServerKeys, error)
	QueryProfile(ctx context.Context, userID, field string) (*synapseclient.Profile, error)
}

var (
	_ Admin      = (*synapseclient.AdminClient)(nil)
	_ Federation = (*synapseclient.FederationClient)(nil)
)

// Checker runs the checks against one Synapse.
type Checker struct {
	Admin      Admin
	Federation Federation
	// Identity is the configured server name and signing keys.
	Identity *signing.Identity
	// SynapseURL is shown in the report and in the unreachable error.
	SynapseURL string
	// Accept lists rooms whose loss the operator accepts: their unsupported version is no blocker.
	Accept []string
	// ExportDir and CachePath are checked for free space; "" skips one.
	ExportDir, CachePath string
	// Statfs reads the free space of a folder's file system (default: the operating system's).
	Statfs func(path string) (FS, error)
	// Concurrency bounds the forward-extremity requests of the event estimate (default 4).
	Concurrency int
	// MAS is set when homeserver.yaml hands logins to the Matrix Authentication Service.
	MAS *MAS
}

// ErrUnreachable is returned by Run when Synapse does not answer at all.
var ErrUnreachable = errors.New("synapse unreachable")

// state carries what earlier checks learned to later ones.
type state struct {
	r       *Report
	admin   bool
	version synapseclient.Version
	rooms   []synapseclient.RoomSummary
	keys    *synapseclient.ServerKeys // what Synapse publishes, once checkSigningKey fetched it
	mas     bool                      // logins are handed to the Matrix Authentication Service
}

// Run runs every check. It returns an error wrapping ErrUnreachable (and no report) when Synapse's
// client API does not answer; any other failure of a check is listed in Report.Errors.
func (c *Checker) Run(ctx context.Context) (*Report, error) {
	if c.Admin == nil || c.Federation == nil || c.Identity == nil || len(c.Identity.Keys) == 0 {
		return nil, errors.New("preflight: Checker needs Admin, Federation and an Identity with a signing key")
	}
	r := &Report{ServerName: c.Identity.ServerName, SynapseURL: c.SynapseURL, Endpoints: []Endpoint{},
		Disk: []Disk{}, Findings: []Finding{}, Errors: []CheckError{}}
	st := &state{r: r}
	if err := c.checkAccess(ctx, st); err != nil {
		return nil, err
	}
	checks := []struct {
		name string
		run  func(context.Context, *state) error
	}{
		{"version", c.checkVersion},
		{"auth", c.checkAuth},
		{"users", c.checkUsers},
		{"rooms", c.checkRooms},
		{"media", c.checkMedia},
		{"signing key", c.checkSigningKey},
		{"compromised key", c.checkCompromisedKey},
		{"federation", c.checkSelfFederation},
		{"disk", c.checkDisk},
	}
	for _, ch := range checks {
		if err := ch.run(ctx, st); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			r.Errors = append(r.Errors, CheckError{Check: ch.name, Error: err.Error()})
		}
	}
	r.finish()
	return r, nil
}
