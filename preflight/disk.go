package preflight

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// FS is what the disk check needs to know about the file system a folder is on.
type FS struct {
	FreeBytes uint64 // available to an unprivileged user
	Device    uint64 // identifies the file system, to tell when two paths share one
}

// Estimates per item, from measurements: the event cache stores about 2.6 KiB per event of 1.5 KB
// (docs/eventcache.md, 1M events in 2,506 MiB); an exported user file with devices, keys and a key
// backup is tens of KiB; a room file holds each state event and its auth chain, about 2 KiB each.
const (
	cacheBytesPerEvent      = 3 << 10
	exportBytesPerUser      = 32 << 10
	exportBytesPerStateItem = 4 << 10
	exportBytesPerRoom      = 4 << 10
	// diskHeadroom is how many times the estimate must be free before the check stops warning.
	diskHeadroom = 2
)

// checkDisk measures the free space where the export and the cache go and warns when it is under
// twice the estimate (their estimates add up when both share one file system).
func (c *Checker) checkDisk(ctx context.Context, st *state) error {
	statfs := c.Statfs
	if statfs == nil {
		statfs = osStatfs
	}
	exportNeed, cacheNeed := uint64(0), uint64(0)
	if st.r.Users != nil && st.r.Rooms != nil {
		exportNeed = uint64(st.r.Users.Total)*exportBytesPerUser + uint64(st.r.Rooms.StateEvents)*exportBytesPerStateItem + uint64(st.r.Rooms.Total)*exportBytesPerRoom
		events, err := c.estimateEvents(ctx, st.rooms)
		if err != nil {
			return fmt.Errorf("estimating the events to archive: %w", err)
		}
		st.r.Rooms.EventsEstimate = events
		cacheNeed = uint64(events) * cacheBytesPerEvent
	}
	type place struct {
		purpose, path string
		need          uint64
		fs            FS
		checked       string
	}
	var places []*place
	for _, p := range []place{{purpose: "export", path: c.ExportDir, need: exportNeed}, {purpose: "cache", path: c.CachePath, need: cacheNeed}} {
		if p.path == "" {
			continue
		}
		checked, err := existingAncestor(p.path)
		if err == nil {
			p.checked = checked
			p.fs, err = statfs(checked)
		}
		if err != nil {
			st.r.add(Info, CodeDiskSpaceUnknown, p.path, "free space for the %s at %s not checked: %v", p.purpose, p.path, err)
			continue
		}
		places = append(places, &p)
	}
	for i, p := range places {
		d := Disk{Purpose: p.purpose, Path: p.path, Checked: p.checked, FreeBytes: p.fs.FreeBytes, EstimateBytes: p.need}
		need, what := p.need, p.purpose
		for j, q := range places {
			if j != i && q.fs.Device == p.fs.Device {
				d.SharedWith = q.purpose
				need += q.need
				what = "export and cache together"
			}
		}
		st.r.Disk = append(st.r.Disk, d)
		switch {
		case need == 0:
			st.r.add(Info, CodeDiskSpace, p.path, "%s free for the %s at %s (no estimate: users or rooms were not counted)", formatBytes(d.FreeBytes), p.purpose, p.path)
		case d.FreeBytes < need*diskHeadroom:
			st.r.add(Warning, CodeDiskSpaceLow, p.path, "only %s free at %s for the %s, which needs about %s (%s); keep at least %s free", formatBytes(d.FreeBytes), p.path, p.purpose, formatBytes(need), what, formatBytes(need*diskHeadroom))
		default:
			st.r.add(Info, CodeDiskSpace, p.path, "%s free at %s for the %s, which needs about %s (%s)", formatBytes(d.FreeBytes), p.path, p.purpose, formatBytes(need), what)
		}
	}
	return nil
}

// estimateEvents adds up the depth of the newest event of every room a local user is joined to:
// depth grows by one per step of the DAG, so it counts the events of a room's main line.
// https://element-hq.github.io/synapse/latest/admin_api/rooms.html#check-for-forward-extremities
func (c *Checker) estimateEvents(ctx context.Context, rooms []synapseclient.RoomSummary) (int64, error) {
	workers := c.Concurrency
	if workers <= 0 {
		workers = 4
	}
	var total atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	for _, r := range rooms {
		if r.JoinedLocalMembers == 0 {
			continue
		}
		if gctx.Err() != nil {
			break // a request failed: start no more
		}
		g.Go(func() error {
			fx, err := c.Admin.ForwardExtremities(gctx, r.RoomID)
			if err != nil {
				return fmt.Errorf("%s: %w", r.RoomID, err)
			}
			var depth int64
			for _, x := range fx {
				depth = max(depth, x.Depth)
			}
			total.Add(depth)
			return nil
		})
	}
	err := g.Wait()
	return total.Load(), err
}

// existingAncestor returns path, or its nearest parent that exists (the export folder may not yet).
func existingAncestor(path string) (string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	for {
		_, err := os.Stat(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		p = parent
	}
}

// formatBytes renders a size with a binary unit, e.g. "1.5 GiB".
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
