package eventcache

import (
	"bufio"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// synthID is a v3-style event ID ("$" + 43 URL-safe base64 chars) for event i of room.
func synthID(room string, i int) string {
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%d", room, i))
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// synthDepth and synthPrev lay a room out in blocks of 10 events where
// positions 5 and 6 fork from 4 at the same depth and 7 merges them.
func synthDepth(i int) int64 {
	p := i % 10
	d := p
	if p >= 6 {
		d = p - 1
	}
	return int64(i/10*9 + d + 1)
}

func synthPrev(room string, i int) []string {
	switch p := i % 10; {
	case i == 0:
		return nil
	case p == 6:
		return []string{synthID(room, i-2)}
	case p == 7:
		return []string{synthID(room, i-2), synthID(room, i-1)}
	default:
		return []string{synthID(room, i-1)}
	}
}

// synthEvent is event i of room with a 1-2 KB JSON body.
func synthEvent(room string, i int) Event {
	id := synthID(room, i)
	e := Event{
		ID: id, RoomID: room, RoomVersion: "10", Depth: synthDepth(i), Stream: int64(i),
		PrevEvents: synthPrev(room, i), AuthEvents: []string{synthID(room, 0)},
		Type: "m.room.message", OriginServerTS: 1735689600000 + int64(i), Status: StatusVerified,
	}
	e.JSON = synthJSON(id, room, 1000+(i*397)%1000)
	return e
}

// procStatus returns VmRSS, RssAnon and RssFile in KiB from /proc/self/status.
func procStatus() (rss, anon, file int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = v
		case "RssAnon:":
			anon = v
		case "RssFile:":
			file = v
		}
	}
	return
}
