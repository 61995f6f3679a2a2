//go:build synapse

package synapsetest

import (
	"context"
	"testing"
	"time"
)

// TestSeed builds the world and checks Synapse's admin API lists what the record says.
func TestSeed(t *testing.T) {
	s := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	rec, err := Seed(ctx, s, SeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("seeded Synapse %s in %s: %d users, %d rooms, skipped %v", rec.Version, time.Since(start), len(rec.Users), len(rec.Rooms), rec.Skipped)
	var rooms struct {
		TotalRooms int `json:"total_rooms"`
	}
	if err := s.Do(ctx, "GET", "/_synapse/admin/v1/rooms?limit=1000", s.AdminToken, nil, &rooms); err != nil {
		t.Fatal(err)
	}
	if rooms.TotalRooms != len(rec.Rooms) {
		t.Errorf("Synapse holds %d rooms, the record %d", rooms.TotalRooms, len(rec.Rooms))
	}
	_, has12 := rec.Named["v12"]
	if has12 != s.SupportsRoomVersion("12") || has12 == (len(rec.Skipped) > 0) {
		t.Errorf("v12 room seeded %v on %s, skipped %v", has12, s.Version, rec.Skipped)
	}
	if len(rec.KeyIDs) != 2 {
		t.Errorf("key IDs %v, want two (rotated)", rec.KeyIDs)
	}
}
