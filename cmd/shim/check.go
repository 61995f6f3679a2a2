package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/transition-matrix/transition-matrix/preflight"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// checkDetails is the part of `shim check -h` after the flags: exit statuses and the JSON shape.
const checkDetails = `Exit status: 0 no blockers, 1 blockers listed, 2 the check could not run
(bad configuration, Synapse unreachable, or a check failed: the report is incomplete).

Blockers: rooms of version 1 or 2 (unless -accept ROOM_ID), a signing key that
is not the one Synapse publishes, a current or old key whose private half is
public (the Element Server Suite key), Synapse refusing federation requests
signed as itself, no admin access, and admin endpoints the export needs missing.
A Synapse that hands its logins to the Matrix Authentication Service (MAS) is a
warning that says what is and is not carried.

With -json, stdout holds one object (also when the exit status is 2):
  {
    "server_name": "example.org",
    "synapse_url": "http://127.0.0.1:8008",
    "synapse_version": "1.67.0",            // "" when unknown
    "admin_user": "@admin:example.org",      // the admin token's user, when known
    "endpoints": [{"name", "path", "since", "required", "available", "used_for"}],
    "users": {"total", "active", "deactivated", "admins", "guests",
              "without_password"} | null,   // null without admin access
    "rooms": {"total", "by_version": {"10": 3}, "unsupported", "accepted",
              "unstable", "no_local_member", "state_events",
              "events_estimate"} | null,     // events_estimate -1 when not estimated
    "media": {"users", "files", "bytes"} | null,
    "disk": [{"purpose": "export"|"cache", "path", "checked", "free_bytes",
              "estimate_bytes", "shared_with"}],
    "findings": [{"severity": "blocker"|"warning"|"info", "code", "subject",
                  "message", "accepted"}],  // blockers first
    "errors": [{"check", "error"}],          // checks that could not run
    "blockers": 1, "warnings": 2, "exit_status": 1
  }
Codes are stable (room_version_unsupported, signing_key_mismatch,
federation_self_refused, no_admin_access, ...; see docs/check.md); messages are
for people and may change.
`

// roomIDs is a repeatable flag of room IDs.
type roomIDs []string

func (r *roomIDs) String() string { return strings.Join(*r, ",") }

func (r *roomIDs) Set(v string) error {
	if !strings.HasPrefix(v, "!") || !strings.Contains(v, ":") {
		return fmt.Errorf("%q is not a room ID (!opaque:server)", v)
	}
	*r = append(*r, v)
	return nil
}

// runCheck is the preflight: it asks the running Synapse everything that decides whether the move
// can go ahead, prints a report, and exits 0 (no blockers), 1 (blockers) or 2 (could not check).
func runCheck(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "check", "check -config FILE [-json] [-accept ROOM_ID]... [-out DIR] [-timeout DURATION]")
	fs.details = checkDetails
	configPath := fs.String("config", "", "the shim's configuration `file` (required; needs synapse.url and synapse.admin_token)")
	asJSON := fs.Bool("json", false, "print the report as one JSON object (shape below) instead of a table")
	var accept roomIDs
	fs.Var(&accept, "accept", "accept the loss of this version 1 or 2 `room` (repeat the flag for each room)")
	out := fs.String("out", ".", "the `directory` shim export will write: its free space is checked")
	timeout := fs.Duration("timeout", 30*time.Second, "time limit of one request to Synapse")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *configPath == "" {
		return usagef("-config is required")
	}
	if *timeout <= 0 {
		return usagef("-timeout must be positive, got %s", *timeout)
	}
	// cannotRun ends with exit status 2, with a JSON report too when one was asked for.
	cannotRun := func(serverName, url, check string, err error) error {
		if *asJSON {
			if werr := preflight.IncompleteReport(serverName, url, check, err).WriteJSON(env.Stdout); werr != nil {
				return exitWith(2, errors.Join(err, werr))
			}
		}
		return exitWith(2, err)
	}
	cfg, err := loadConfig(env, *configPath, "synapse.url", "synapse.admin_token")
	if err != nil {
		return cannotRun("", "", "config", err)
	}
	client, err := synapseclient.New(synapseclient.Config{
		BaseURL: cfg.Synapse.URL, FederationURL: cfg.FederationURL(), AdminToken: string(cfg.Synapse.AdminToken),
		ServerName: cfg.ServerName, Identity: cfg.Identity,
		Timeout: *timeout, MaxAttempts: 2, MaxTotalWait: 10 * time.Second,
	})
	if err != nil {
		return cannotRun(cfg.ServerName, cfg.Synapse.URL, "config", err)
	}
	checker := &preflight.Checker{
		Admin: client.Admin(), Federation: client.Federation(), Identity: cfg.Identity, SynapseURL: cfg.Synapse.URL,
		Accept: accept, ExportDir: *out, CachePath: cfg.Path(cfg.Cache.Path),
	}
	if cfg.MAS.Enabled {
		checker.MAS = &preflight.MAS{Key: cfg.MAS.Key, Endpoint: cfg.MAS.Endpoint}
	}
	rep, err := checker.Run(ctx)
	if err != nil {
		return cannotRun(cfg.ServerName, cfg.Synapse.URL, "reach", err)
	}
	if *asJSON {
		err = rep.WriteJSON(env.Stdout)
	} else {
		err = rep.WriteText(env.Stdout, textOptions(env))
	}
	if err != nil {
		return exitWith(2, err)
	}
	if rep.ExitStatus != 0 {
		return exitWith(rep.ExitStatus, nil)
	}
	return nil
}

// textOptions colours and wraps the table when stdout is a terminal.
func textOptions(env *Env) preflight.TextOptions {
	f, ok := env.Stdout.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return preflight.TextOptions{}
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		width = 0
	}
	return preflight.TextOptions{Color: true, Width: width}
}
