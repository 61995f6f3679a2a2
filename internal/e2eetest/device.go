// Package e2eetest drives real Matrix clients (matrix-js-sdk with its Rust crypto stack, in Node)
// through an end-to-end-encrypted scenario, so a test can show that E2EE survives a migration.
package e2eetest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	// ErrNoNode means node or npm is not on PATH.
	ErrNoNode = errors.New("e2eetest: node and npm are needed (Node 20 or newer)")
	// ErrNpm means installing the client's packages failed.
	ErrNpm = errors.New("e2eetest: npm ci failed")
	// ErrDeviceExited means a device's Node process ended while a command waited for its answer.
	ErrDeviceExited = errors.New("e2eetest: the device's node process exited")
	// ErrCommand means the device answered a command with an error.
	ErrCommand = errors.New("e2eetest: device command failed")
)

// JSDir is the Node project holding device.mjs, next to this file.
func JSDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "js")
}

var npmOnce sync.Once
var npmErr error

// Install runs `npm ci` in JSDir once per test binary when node_modules is missing or older than
// package-lock.json, with npm's cache under ~/.cache/transition-matrix/npm.
func Install() error {
	npmOnce.Do(func() {
		if _, err := exec.LookPath("node"); err != nil {
			npmErr = ErrNoNode
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			npmErr = ErrNoNode
			return
		}
		dir := JSDir()
		lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
		if err != nil {
			npmErr = fmt.Errorf("%w: %v", ErrNpm, err)
			return
		}
		if done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !done.ModTime().Before(lock.ModTime()) {
			return
		}
		home, _ := os.UserHomeDir()
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--cache", filepath.Join(home, ".cache", "transition-matrix", "npm"))
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			npmErr = fmt.Errorf("%w in %s: %v\n%s", ErrNpm, dir, err, out)
		}
	})
	return npmErr
}

// Device is one Matrix device: a Node process running device.mjs, whose crypto store lives as
// long as the process does.
type Device struct {
	Name string

	t      testing.TB
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	nextID int
	wait   map[int]chan answer
	exited chan struct{}
	stderr *lockedBuffer
}

type answer struct {
	ID     int             `json:"id"`
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

// StartDevice runs a device process for the test; it is ended in t.Cleanup and its log (stderr)
// is shown when the test failed.
func StartDevice(t testing.TB, name string) *Device {
	t.Helper()
	if err := Install(); err != nil {
		t.Fatal(err)
	}
	d := &Device{Name: name, t: t, wait: map[int]chan answer{}, exited: make(chan struct{}), stderr: &lockedBuffer{}}
	d.cmd = exec.Command("node", "device.mjs")
	d.cmd.Dir = JSDir()
	d.cmd.Env = append(os.Environ(), "TM_E2EE_NAME="+name)
	d.cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = d.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := d.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("e2eetest: start node for %s: %v", name, err)
	}
	go d.read(stdout)
	t.Cleanup(func() {
		_ = d.stdin.Close()
		<-d.exited
		_ = d.cmd.Wait()
		if t.Failed() {
			t.Logf("device %s log:\n%s", name, d.stderr.tail(80))
		}
	})
	return d
}

func (d *Device) read(r io.Reader) {
	defer close(d.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var a answer
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			d.stderr.Write([]byte("unparsed stdout line: " + sc.Text() + "\n"))
			continue
		}
		d.mu.Lock()
		ch := d.wait[a.ID]
		delete(d.wait, a.ID)
		d.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
}

// Call sends one command with its arguments and decodes the result into out (when not nil).
func (d *Device) Call(ctx context.Context, cmd string, args map[string]any, out any) error {
	msg := map[string]any{}
	for k, v := range args {
		msg[k] = v
	}
	ch := make(chan answer, 1)
	d.mu.Lock()
	d.nextID++
	id := d.nextID
	d.wait[id] = ch
	d.mu.Unlock()
	msg["id"], msg["cmd"] = id, cmd
	line, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("%w (%s, %s): %v", ErrDeviceExited, d.Name, cmd, err)
	}
	select {
	case a := <-ch:
		if !a.OK {
			return fmt.Errorf("%w: %s: %s", ErrCommand, d.Name, a.Error)
		}
		if out != nil {
			return json.Unmarshal(a.Result, out)
		}
		return nil
	case <-d.exited:
		return fmt.Errorf("%w (%s, %s); log:\n%s", ErrDeviceExited, d.Name, cmd, d.stderr.tail(30))
	case <-ctx.Done():
		return fmt.Errorf("e2eetest: %s: %s: %w", d.Name, cmd, ctx.Err())
	}
}

// MustCall is Call that ends the test on error.
func (d *Device) MustCall(ctx context.Context, cmd string, args map[string]any, out any) {
	d.t.Helper()
	if err := d.Call(ctx, cmd, args, out); err != nil {
		d.t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) tail(n int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
