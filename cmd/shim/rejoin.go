package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/transition-matrix/transition-matrix/cutover"
)

// runRejoin asks the target to join, through the shim (server_name = the own name), one local
// member of every Synapse room with a joined local user, so the target holds every room at its
// current state. Rooms the target holds already are left alone; rooms it cannot host are named.
func runRejoin(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "rejoin", "rejoin -config FILE [-target URL] [-j N]")
	fs.details = "Needs synapse.url, synapse.admin_token, target.url (or -target) and target.token (the\n" +
		"target's appservice as_token; see docs/cutover.md). `shim serve` must be running.\n"
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	targetURL := fs.String("target", "", "the target's client API `URL` (overrides target.url)")
	parallel := fs.Int("j", 2, "rooms joined at once")
	if err := fs.parse(args); err != nil {
		return err
	}
	if *parallel < 1 {
		return usagef("-j must be at least 1")
	}
	cfg, err := loadTargetConfig(env, *configPath, *targetURL)
	if err != nil {
		return err
	}
	admin, err := newAdminClient(cfg)
	if err != nil {
		return err
	}
	rooms, err := cutover.Rooms(ctx, admin, cfg.ServerName)
	if err != nil {
		return err
	}
	target := newTargetClient(cfg, 0, "", "")
	results := cutover.Rejoin(ctx, target, cfg.ServerName, rooms, *parallel)
	if err := printRejoinTable(env.Stdout, results); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: rerun the same command to continue (rooms the target holds are skipped)")
	}
	var failed []string
	for _, res := range results {
		if res.Outcome == "failed" {
			failed = append(failed, res.Room.ID)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d rooms failed to join: %s; rerun after fixing the cause", len(failed), len(rooms), strings.Join(failed, ", "))
	}
	return nil
}

func printRejoinTable(w io.Writer, results []cutover.RejoinResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ROOM\tVERSION\tMEMBER\tRESULT")
	count := map[string]int{}
	for _, res := range results {
		out := res.Outcome
		if res.Detail != "" {
			out += ": " + res.Detail
		}
		member := res.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", res.Room.ID, res.Room.Version, member, out)
		count[res.Outcome]++
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d rooms: %d joined, %d already held, %d skipped, %d failed\n", len(results),
		count["joined"], count["already held"], count["skipped"], count["failed"])
	return err
}
