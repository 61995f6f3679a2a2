package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// runShim runs the command line in-process and returns its exit status and output.
func runShim(t testing.TB, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run(context.Background(), args, &Env{Stdout: &out, Stderr: &errOut, Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errOut.String()
}

func TestHelpAndUsageErrors(t *testing.T) {
	cases := []struct {
		args       []string
		code       int
		out, err   string
		oneLineErr bool
	}{
		{args: []string{"help"}, code: 0, out: "Commands:"},
		{args: []string{"-h"}, code: 0, out: "keys"},
		{args: nil, code: 2, err: "Usage:"},
		{args: []string{"frobnicate"}, code: 2, err: `unknown command "frobnicate"`},
		{args: []string{"keys", "-nope"}, code: 2, err: "flag provided but not defined: -nope", oneLineErr: true},
		{args: []string{"keys"}, code: 2, err: "-config is required", oneLineErr: true},
		{args: []string{"keys", "-config", "x", "extra"}, code: 2, err: `unexpected argument "extra"`, oneLineErr: true},
		{args: []string{"keys", "-h"}, code: 0, out: "Usage: shim keys"},
		{args: []string{"help", "keys"}, code: 0, out: "-conduit"},
	}
	for _, c := range cases {
		code, out, errOut := runShim(t, nil, c.args...)
		if code != c.code || !strings.Contains(out, c.out) || !strings.Contains(errOut, c.err) {
			t.Errorf("shim %v: code %d\nstdout %q\nstderr %q", c.args, code, out, errOut)
		}
		if c.oneLineErr && (strings.Count(errOut, "\n") != 2 || out != "") {
			t.Errorf("shim %v: want a one-line error and a hint, got %q", c.args, errOut)
		}
	}
}

// TestOneExitStatusForTheSameMistake: a missing configuration file is exit status 2 for every
// command that reads one, and shim help documents the convention.
func TestOneExitStatusForTheSameMistake(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	extra := map[string][]string{"import": {"conduit", "-export", "x", "-db", "y"}, "verify": {"-export", "x"}, "export": {"-out", "x"}}
	for _, c := range commands() {
		if c.name == "help" || c.name == "demo" {
			continue
		}
		args := append([]string{c.name}, extra[c.name]...)
		if c.name == "import" {
			args = append(args[:2], append([]string{"-config", missing}, args[2:]...)...)
		} else {
			args = append(args, "-config", missing)
		}
		code, _, errOut := runShim(t, nil, args...)
		if code != exitCannotRun || !strings.Contains(errOut, "missing.yaml") || strings.Count(errOut, "\n") != 1 {
			t.Errorf("shim %s with a missing configuration: exit %d, want %d, and one line naming the file; stderr %q", c.name, code, exitCannotRun, errOut)
		}
	}
	_, out, _ := runShim(t, nil, "help")
	for _, want := range []string{"Exit status, the same for every command", "0  done", "1  it ran", "2  it could not run"} {
		if !strings.Contains(out, want) {
			t.Errorf("shim help does not document the exit statuses (%q):\n%s", want, out)
		}
	}
}

// TestUsageLineNamesEveryFlag: each command's usage line (-h) names every flag it takes, so the
// synopsis cannot go stale when a flag is added.
func TestUsageLineNamesEveryFlag(t *testing.T) {
	for _, c := range commands() {
		if c.name == "help" {
			continue
		}
		args := []string{c.name, "-h"}
		if c.name == "import" {
			args = []string{"import", "conduit", "-h"}
		}
		code, out, _ := runShim(t, nil, args...)
		usage, flags, _ := strings.Cut(out, "\n")
		if code != 0 || !strings.HasPrefix(usage, "Usage: shim "+c.name) {
			t.Errorf("shim %v: exit %d, no usage line: %q", args, code, out)
			continue
		}
		for _, l := range strings.Split(flags, "\n") {
			if !strings.HasPrefix(l, "  -") {
				continue
			}
			name, _, _ := strings.Cut(strings.TrimPrefix(l, "  "), " ")
			if !regexp.MustCompile(`(^|[\s\[(|])` + regexp.QuoteMeta(name) + `([\s\])|]|$)`).MatchString(usage) {
				t.Errorf("shim %s: the usage line %q does not name %s", c.name, usage, name)
			}
		}
	}
}
