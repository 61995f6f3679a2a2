package eventcache

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

const (
	crashChildEnv  = "EVENTCACHE_CRASH_CHILD" // path of the cache the child writes
	crashBatchSize = 25
	crashRooms     = 3
)

// crashBatch is batch n of the crash test: a chain of events in one room,
// a frontier entry for the next batch's first event, and the crawl progress.
func crashBatch(n int) Batch {
	room := fmt.Sprintf("!crash%d", n%crashRooms)
	var b Batch
	for j := range crashBatchSize {
		id := fmt.Sprintf("$c%05d-%02d", n, j)
		e := ev(room, id, int64(n*crashBatchSize+j))
		e.JSON = synthJSON(id, room, 1000+j*37)
		if j > 0 {
			e.PrevEvents = []string{fmt.Sprintf("$c%05d-%02d", n, j-1)}
		}
		b.Events = append(b.Events, e)
	}
	b.FrontierAdd = []Ref{{room, fmt.Sprintf("$c%05d-%02d", n+crashRooms, 0)}}
	b.Rooms = []RoomMeta{{RoomID: "!progress", Progress: []byte(strconv.Itoa(n))}}
	return b
}

// TestCrashChild is the child side of TestCrashSafety: it resumes after the
// last committed batch and writes batches until killed, printing one line
// after each commit.
func TestCrashChild(t *testing.T) {
	path := os.Getenv(crashChildEnv)
	if path == "" {
		t.Skip("only runs as TestCrashSafety's child")
	}
	c, err := Open(path, Options{})
	if err != nil {
		fmt.Printf("error %v\n", err)
		os.Exit(2)
	}
	next := 0
	if m, ok, _ := c.RoomMeta("!progress"); ok {
		last, _ := strconv.Atoi(string(m.Progress))
		next = last + 1
	}
	fmt.Printf("ready %d\n", next)
	for n := next; n < next+100000; n++ {
		if err := c.Apply(crashBatch(n)); err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(2)
		}
		fmt.Printf("committed %d\n", n)
	}
	os.Exit(3) // never reached in practice: the parent kills first
}

// TestCrashSafety SIGKILLs a writing child at random points and checks after
// each kill that every reported batch is intact, no batch is partial, and the
// indexes agree with the records.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashChildEnv) != "" {
		t.Skip("child")
	}
	path := t.TempDir() + "/crash.db"
	rng := rand.New(rand.NewPCG(20260101, 7))
	rounds := 6
	if !testing.Short() {
		rounds = 20
	}
	reported := -1 // highest batch a child reported committed
	for round := range rounds {
		killAfter := 1 + rng.IntN(25) // commit lines to read before SIGKILL
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		seen := 0
		for seen < killAfter && sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "committed "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "committed "))
				reported = max(reported, n)
				seen++
			case strings.HasPrefix(line, "ready "):
				n, _ := strconv.Atoi(strings.TrimPrefix(line, "ready "))
				if n > reported+2 || n < reported+1 {
					t.Fatalf("round %d: child resumes at batch %d, last reported %d", round, n, reported)
				}
			case strings.HasPrefix(line, "error "):
				t.Fatalf("round %d: child: %s", round, line)
			}
		}
		cmd.Process.Kill() // SIGKILL, mid-commit or between commits
		// Lines the child wrote before it died may still sit in the pipe: they count as reported.
		for sc.Scan() {
			if n, ok := strings.CutPrefix(sc.Text(), "committed "); ok {
				if v, err := strconv.Atoi(n); err == nil {
					reported = max(reported, v)
				}
			}
		}
		cmd.Wait()
		if seen < killAfter {
			t.Fatalf("round %d: child ended after %d commits", round, seen)
		}
		last := verifyCrashCache(t, path, reported)
		t.Logf("round %d: killed after %d commit lines; reported up to batch %d, file holds up to %d", round, killAfter, reported, last)
	}
}

// verifyCrashCache opens the cache a killed child left and returns the last
// batch it holds, failing on any lost, partial or damaged batch.
func verifyCrashCache(t *testing.T, path string, reported int) int {
	t.Helper()
	c, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer c.Close()
	mustCheck(t, c)
	last := -1
	for n := 0; ; n++ {
		b := crashBatch(n)
		var want []string
		for _, e := range b.Events {
			want = append(want, e.ID)
		}
		found, missing, err := c.GetMany(want)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) > 0 && len(missing) > 0 {
			t.Fatalf("batch %d partially present: %d of %d events", n, len(found), len(want))
		}
		if len(found) == 0 {
			if n <= reported {
				t.Fatalf("batch %d was reported committed but is missing", n)
			}
			break
		}
		for i, e := range found {
			if string(e.JSON) != string(b.Events[i].JSON) || e.Depth != b.Events[i].Depth {
				t.Fatalf("event %s damaged", e.ID)
			}
		}
		last = n
	}
	if last > reported+1 {
		t.Fatalf("file holds batch %d, only %d reported (one in flight allowed)", last, reported)
	}
	m, _, err := c.RoomMeta("!progress")
	if err != nil || string(m.Progress) != strconv.Itoa(last) {
		t.Fatalf("progress %q, last batch %d (%v)", m.Progress, last, err)
	}
	st, _ := c.Stats()
	if st.Events != int64((last+1)*crashBatchSize) {
		t.Fatalf("stats count %d events for %d batches", st.Events, last+1)
	}
	return last
}
