package synapsesim

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/tidwall/gjson"
	"github.com/transition-matrix/transition-matrix/signing"
)

func TestFaultErrorNext(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	rule := s.Faults().FailNext("fed.*", 2, 0)
	uri := "/_matrix/federation/v1/event/" + esc(dmOf(t, w).Latest().ID)
	for i := range 2 {
		if r := fed(t, s, "GET", uri, nil); r.status != 500 || r.json(t)["errcode"] != "M_UNKNOWN" {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
	if r := fed(t, s, "GET", uri, nil); r.status != 200 {
		t.Fatalf("third request: %d", r.status)
	}
	if rule.Hits() != 2 {
		t.Fatalf("hits %d", rule.Hits())
	}
	if r := do(t, s, "GET", "/_matrix/client/versions", "", nil); r.status != 200 {
		t.Fatal("fault leaked to another endpoint")
	}
}

func TestFaultErrorProbabilityIsSeeded(t *testing.T) {
	w := sharedWorld(t)
	run := func() []int {
		s := Start(t, Options{World: w, Seed: 42})
		s.Faults().FailRandomly("fed.version", 0.5)
		var out []int
		for range 40 {
			out = append(out, fed(t, s, "GET", "/_matrix/federation/v1/version", nil).status)
		}
		return out
	}
	a, b := run(), run()
	fails := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed, different faults")
		}
		if a[i] == 500 {
			fails++
		}
	}
	if fails == 0 || fails == len(a) {
		t.Fatalf("%d of %d failed", fails, len(a))
	}
}

func TestFaultHold(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	hold := s.Faults().Hold("fed.event")
	uri := "/_matrix/federation/v1/event/" + esc(dmOf(t, w).Latest().ID)
	done := make(chan int, 1)
	req := fedRequest(t, s, "GET", uri, nil)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	<-hold.Arrived()
	select {
	case st := <-done:
		t.Fatalf("held request finished with %d", st)
	default:
	}
	hold.Release()
	if st := <-done; st != 200 {
		t.Fatalf("released request: %d", st)
	}
	hold.Remove()
}

func TestFaultDropAndTruncate(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	room := dmOf(t, w)
	uri := "/_matrix/federation/v1/backfill/" + esc(room.ID) + "?v=" + esc(room.Latest().ID) + "&limit=20"
	s.Faults().DropNext("fed.backfill", 1)
	if resp, err := http.DefaultClient.Do(fedRequest(t, s, "GET", uri, nil)); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped request answered %d", resp.StatusCode)
	}
	s.Faults().TruncateNext("fed.backfill", 1)
	resp, err := http.DefaultClient.Do(fedRequest(t, s, "GET", uri, nil))
	if err == nil {
		var v any
		err = json.NewDecoder(resp.Body).Decode(&v)
		resp.Body.Close()
	}
	if err == nil {
		t.Fatal("truncated answer decoded")
	}
	if r := fed(t, s, "GET", uri, nil); r.status != 200 {
		t.Fatalf("after faults: %d", r.status)
	}
}

func TestFaultTamperBreaksHashes(t *testing.T) {
	w := sharedWorld(t)
	s := Start(t, Options{World: w})
	room := dmOf(t, w)
	uri := "/_matrix/federation/v1/backfill/" + esc(room.ID) + "?v=" + esc(room.Latest().ID) + "&limit=20"
	s.Faults().TamperNext("fed.backfill", 1)
	r := fed(t, s, "GET", uri, nil)
	if r.status != 200 {
		t.Fatalf("%d", r.status)
	}
	for _, pdu := range rawPDUs(t, r, "pdus") {
		if gjson.GetBytes(pdu, "content").Raw == "{}" {
			continue
		}
		var m map[string]any
		_ = json.Unmarshal(pdu, &m)
		delete(m, "unsigned")
		b, _ := json.Marshal(m)
		hash, _ := signing.ContentHash(b)
		if hash == gjson.GetBytes(pdu, "hashes.sha256").String() {
			t.Fatalf("tampered PDU still matches its hash: %s", pdu)
		}
	}
	clean := fed(t, s, "GET", uri, nil)
	for _, pdu := range rawPDUs(t, clean, "pdus") {
		var m map[string]any
		_ = json.Unmarshal(pdu, &m)
		delete(m, "unsigned")
		b, _ := json.Marshal(m)
		hash, _ := signing.ContentHash(b)
		if gjson.GetBytes(pdu, "unsigned.redacted_by").Exists() {
			continue
		}
		if hash != gjson.GetBytes(pdu, "hashes.sha256").String() {
			t.Fatalf("clean PDU fails its hash: %s", pdu)
		}
	}
}
