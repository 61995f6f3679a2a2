package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
)

// rejoinResult is what rejoin did with one room.
type rejoinResult struct {
	Room    migratingRoom
	Member  string
	Outcome string // "joined", "already held", "skipped", "failed"
	Detail  string
}

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
	rooms, err := migratingRooms(ctx, admin, cfg.ServerName)
	if err != nil {
		return err
	}
	r := &rejoiner{target: newTargetClient(cfg), server: cfg.ServerName, joined: map[string][]string{}}
	results := make([]rejoinResult, len(rooms))
	forEachParallel(len(rooms), *parallel, func(i int) {
		if rooms[i].Skip != "" {
			results[i] = rejoinResult{Room: rooms[i], Outcome: "skipped", Detail: rooms[i].Skip}
			return
		}
		results[i] = r.rejoin(ctx, rooms[i])
	})
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

// rejoiner joins rooms on the target, remembering each member's joined rooms.
type rejoiner struct {
	target *targetClient
	server string

	mu     sync.Mutex
	joined map[string][]string // member -> rooms the target has them joined to
}

// rejoin joins one room as the first of its local members the target knows.
func (r *rejoiner) rejoin(ctx context.Context, room migratingRoom) rejoinResult {
	res := rejoinResult{Room: room}
	var refused []string
	for _, m := range room.Members {
		held, err := r.joinedRooms(ctx, m)
		var te *targetError
		if errors.As(err, &te) && te.Status == http.StatusForbidden {
			refused = append(refused, m) // not a user of the target (not imported?)
			continue
		}
		res.Member = m
		if err != nil {
			res.Outcome, res.Detail = "failed", "asking the target for the member's rooms: "+err.Error()
			return res
		}
		if slices.Contains(held, room.ID) {
			res.Outcome = "already held"
			return res
		}
		if err := r.target.join(ctx, m, room.ID, r.server); err != nil {
			res.Outcome, res.Detail = "failed", err.Error()
			return res
		}
		res.Outcome = "joined"
		return res
	}
	res.Outcome = "failed"
	res.Detail = fmt.Sprintf("the target refuses every local member (%s): were the users imported, and is the appservice's namespace @.*:%s?",
		strings.Join(refused, ", "), r.server)
	return res
}

func (r *rejoiner) joinedRooms(ctx context.Context, member string) ([]string, error) {
	r.mu.Lock()
	held, ok := r.joined[member]
	r.mu.Unlock()
	if ok {
		return held, nil
	}
	held, err := r.target.joinedRooms(ctx, member)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	r.joined[member] = held
	r.mu.Unlock()
	return held, nil
}

func printRejoinTable(w io.Writer, results []rejoinResult) error {
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
