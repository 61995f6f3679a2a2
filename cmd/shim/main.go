// Command shim moves a Matrix homeserver from Synapse to Conduit under the same server name.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:], &Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// Env is what a command may touch outside itself, so tests can run commands in-process.
type Env struct {
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Ready, when set, is told each listener's address once it accepts connections ("federation",
	// "metrics"), so tests and the demo wait on readiness instead of guessing.
	Ready func(what, addr string)

	// urlKeys maps each server URL of the loaded configuration (scheme://host) to its key, so an
	// unreachable server is reported with the key that names it.
	urlKeys map[string]string
	// configPath is the configuration file the command loaded, for messages.
	configPath string
}

// command is one subcommand: its name, a one-line summary, and its entry point.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands lists every subcommand in the order `shim help` shows them.
func commands() []command {
	return []command{
		{"check", "preflight: what stands in the way of moving this Synapse (exit 0 = no blockers)", runCheck},
		{"keys", "print the signed key document, or the key in Conduit's form", runKeys},
		{"export", "write every user and room to a directory, with a manifest (resumable)", runExport},
		{"import", "write an export, Synapse's sessions and media into a stopped Conduit's database (import conduit)", runImport},
		{"archive", "crawl every room's history from Synapse into the verified event cache", runArchive},
		{"serve", "run the federation sidecar Conduit backfills history from", runServe},
		{"rejoin", "have the target join every room through the shim (as a local member, via the appservice)", runRejoin},
		{"warm", "page every room back to m.room.create on the target, so it backfills all history now (resumable)", runWarm},
		{"verify", "compare the target with Synapse (or the export and the cache): what arrived, what is missing", runVerify},
		{"demo", "run the whole migration against a simulated Synapse and a simulated Conduit (-serve: keep them running to try the commands)", runDemo},
		{"help", "show this help, or a command's flags", nil},
	}
}

// usageError is a wrong invocation: exit status 2 and a one-line hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// exitError ends a command with a given exit status; err, when not nil, is printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitWith returns an error that makes Run return code, printing err (if any) as other failures are.
func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

// Exit statuses, the same for every command (shim help shows exitStatusHelp).
const (
	exitOK = 0
	// exitFailed: the command ran but did not finish its job, or found problems.
	exitFailed = 1
	// exitCannotRun: the command could not run: wrong usage, bad configuration, a server or a
	// file it needs cannot be reached or is held.
	exitCannotRun = 2
)

// exitStatusHelp documents the exit statuses in shim help.
const exitStatusHelp = `Exit status, the same for every command:
  0  done (check: no blockers; verify: everything arrived)
  1  it ran, but something failed or is missing (check: blockers; verify: missing
     events or users); the output names each one, and rerunning continues
  2  it could not run: wrong flags, a problem in the configuration, or a server or
     file it needs cannot be reached or is in use; the message says which
`

// Run executes the command line args and returns the process exit status (exitStatusHelp): 0
// success, 1 failure, 2 could not run, or the status a command chose with exitWith.
func Run(ctx context.Context, args []string, env *Env) int {
	if env.Getenv == nil {
		env.Getenv = os.Getenv
	}
	if len(args) == 0 {
		printHelp(env.Stderr)
		return exitCannotRun
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "-help" || name == "--help" {
		if len(args) > 1 && name == "help" {
			return Run(ctx, []string{args[1], "-h"}, env)
		}
		printHelp(env.Stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != name || c.run == nil {
			continue
		}
		err := c.run(ctx, env, args[1:])
		var ue *usageError
		var ee *exitError
		switch {
		case err == nil:
			return exitOK
		case errors.Is(err, flag.ErrHelp):
			return exitOK
		case errors.As(err, &ue):
			fmt.Fprintf(env.Stderr, "shim %s: %s\nRun 'shim %s -h' for usage.\n", name, ue.msg, name)
			return exitCannotRun
		case errors.As(err, &ee):
			if ee.err != nil {
				fmt.Fprintf(env.Stderr, "shim %s: %v\n", name, describe(env, ee.err))
			}
			return ee.code
		default:
			if u := unreachable(env, err); u != nil {
				fmt.Fprintf(env.Stderr, "shim %s: %v\n", name, u)
				return exitCannotRun
			}
			fmt.Fprintf(env.Stderr, "shim %s: %v\n", name, err)
			return exitFailed
		}
	}
	fmt.Fprintf(env.Stderr, "shim: unknown command %q\nRun 'shim help' for the list of commands.\n", name)
	return exitCannotRun
}

func printHelp(w io.Writer) {
	fmt.Fprint(w, `shim moves a Matrix homeserver from Synapse to Conduit under the same server name.

Usage:
  shim <command> [flags]

Commands:
`)
	cmds := commands()
	width := 0
	for _, c := range cmds {
		width = max(width, len(c.name))
	}
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].name != "help" && cmds[j].name == "help" })
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-*s  %s\n", width, c.name, c.summary)
	}
	fmt.Fprint(w, "\nRun 'shim <command> -h' for a command's flags.\n\n"+exitStatusHelp)
}

// flagSet is a command's flags; it prints nothing by itself: parse prints its usage for -h and
// turns its errors into one-line usage errors.
type flagSet struct {
	*flag.FlagSet
	env      *Env
	synopsis string
	// details, when set, is printed after the flags by -h.
	details string
}

func newFlagSet(env *Env, name, synopsis string) *flagSet {
	fs := flag.NewFlagSet("shim "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{FlagSet: fs, env: env, synopsis: synopsis}
}

// parse parses args, printing usage for -h and rejecting stray arguments.
func (fs *flagSet) parse(args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(fs.env.Stdout, "Usage: shim %s\n\n", fs.synopsis)
			fs.SetOutput(fs.env.Stdout)
			fs.PrintDefaults()
			if fs.details != "" {
				fmt.Fprintf(fs.env.Stdout, "\n%s", fs.details)
			}
			return err
		}
		return usagef("%s", strings.TrimSpace(err.Error()))
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}
