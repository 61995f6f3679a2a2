// Package testproc runs a server process for integration tests: it starts a command with its
// output in a log file, waits on a readiness endpoint with a bounded loop, and stops it with
// SIGTERM, killing it past a bound.
package testproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// PollEvery is how often WaitReady asks the readiness endpoint; it paces a bounded loop.
const PollEvery = 25 * time.Millisecond

// Errors of the package.
var (
	ErrExited   = errors.New("testproc: process exited before it was ready")
	ErrNotReady = errors.New("testproc: readiness endpoint did not answer 200 in time")
	ErrKilled   = errors.New("testproc: process did not exit on SIGTERM in time and was killed")
)

// Proc is a started process whose stdout and stderr go to a log file.
type Proc struct {
	LogPath string

	cmd     *exec.Cmd
	exited  chan struct{}
	exitErr error // written before exited is closed
}

// Start runs cmd with stdout and stderr written to logPath (mode 0600), appended to or, with
// truncate, replacing what is there.
func Start(cmd *exec.Cmd, logPath string, truncate bool) (*Proc, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if truncate {
		flags = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	}
	logf, err := os.OpenFile(logPath, flags, 0o600)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &Proc{LogPath: logPath, cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.exitErr = cmd.Wait()
		logf.Close()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// ExitErr is the process's exit error (nil for status 0); it is valid once Exited is closed.
func (p *Proc) ExitErr() error {
	select {
	case <-p.exited:
		return p.exitErr
	default:
		return nil
	}
}

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Stop sends SIGTERM and waits up to bound for the process to exit; past it the process is killed
// and ErrKilled returned. Stopping an exited process is harmless.
func (p *Proc) Stop(bound time.Duration) error {
	if !p.Running() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(bound)
	defer timer.Stop()
	select {
	case <-p.exited:
		return nil
	case <-timer.C:
	}
	p.Kill()
	return fmt.Errorf("%w (bound %s)", ErrKilled, bound)
}

// Kill ends the process with SIGKILL, as a crash would, and waits for it to exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// WaitReady polls url with GET until it answers 200 (nil), exited is closed (ErrExited), or ctx
// ends (ErrNotReady).
func WaitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	tick := time.NewTicker(PollEvery)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("testproc: readiness URL %q: %w", url, err)
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-exited:
			return ErrExited
		case <-ctx.Done():
			return fmt.Errorf("%w: %s (%v)", ErrNotReady, url, context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// LogTail returns the last n lines of the file at path, or the read error's text.
func LogTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FreePort asks the kernel for a free loopback port. Another process may take it before the
// caller binds it, so callers retry a start that fails with "address in use".
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
