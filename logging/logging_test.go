package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestNewFormatsAndLevels(t *testing.T) {
	var buf bytes.Buffer
	z, err := New(&buf, "warn", "json")
	if err != nil {
		t.Fatal(err)
	}
	z.Info("hidden")
	z.Warn("shown")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["msg"] != "shown" || line["level"] != "warn" {
		t.Fatalf("json output %q (%v)", buf.String(), err)
	}
	buf.Reset()
	z, _ = New(&buf, "debug", "console")
	z.Debug("hello")
	if !strings.Contains(buf.String(), "DEBUG") || !strings.Contains(buf.String(), "hello") {
		t.Fatalf("console output %q", buf.String())
	}
	if _, err := New(&buf, "loud", "json"); err == nil {
		t.Fatal("bad level accepted")
	}
	if _, err := New(&buf, "info", "xml"); err == nil {
		t.Fatal("bad format accepted")
	}
}

// TestNewSerialisesWrites logs from several goroutines into a plain bytes.Buffer (as tests pass
// for Env.Stderr): under -race an unlocked writer is reported, and every line must stay whole.
func TestNewSerialisesWrites(t *testing.T) {
	var buf bytes.Buffer
	z, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range each {
				z.Info("line")
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != writers*each {
		t.Fatalf("%d lines, want %d", len(lines), writers*each)
	}
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil || m["msg"] != "line" {
			t.Fatalf("torn line %q (%v)", l, err)
		}
	}
}

func TestBridgeLogrus(t *testing.T) {
	var buf bytes.Buffer
	z, _ := New(&buf, "info", "json")
	BridgeLogrus(z)
	logrus.WithField("origin", "x.example").Info("Invalid request signature")
	if buf.Len() != 0 {
		t.Fatalf("logrus info should be demoted to debug, got %q", buf.String())
	}
	logrus.WithField("room", "!r").Warn("something odd")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line["logger"] != "gomatrixserverlib" || line["room"] != "!r" || line["level"] != "warn" {
		t.Fatalf("bridged output %q (%v)", buf.String(), err)
	}
}
