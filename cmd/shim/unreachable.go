package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
)

// errUnreachable marks a failure to reach a server at all (no connection, no name, no answer).
var errUnreachable = errors.New("server unreachable")

// unreachableError is one line for an operator: which server did not answer, why, and what to check.
type unreachableError struct {
	base   string // scheme://host of the server
	key    string // the configuration key naming it, "" when unknown
	config string // the configuration file, "" when unknown
	reason string // e.g. "connection refused"
}

func (e *unreachableError) Error() string {
	what := "the server"
	switch e.key {
	case "synapse.url", "synapse.federation_url":
		what = "Synapse"
	case "target.url":
		what = "the target"
	}
	check := "that it runs and listens there"
	if e.key != "" {
		where := e.key
		if e.config != "" {
			where += " in " + e.config
		}
		check += ", and that " + where + " names it"
	}
	return fmt.Sprintf("%s at %s does not answer (%s): check %s", what, e.base, e.reason, check)
}

func (e *unreachableError) Unwrap() error { return errUnreachable }

// unreachable returns the one-line report of err when err is a failure to reach a server, else nil.
func unreachable(env *Env, err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return nil
	}
	reason := ""
	var dns *net.DNSError
	var op *net.OpError
	switch {
	case errors.As(ue.Err, &dns):
		reason = "no such host: " + dns.Name
		if !dns.IsNotFound {
			reason = "looking up " + dns.Name + " failed"
		}
	case errors.Is(ue.Err, syscall.ECONNREFUSED):
		reason = "connection refused"
	case errors.Is(ue.Err, syscall.EHOSTUNREACH), errors.Is(ue.Err, syscall.ENETUNREACH):
		reason = "no route to the host"
	case errors.Is(ue.Err, syscall.ECONNRESET):
		reason = "connection reset"
	case errors.Is(ue.Err, os.ErrDeadlineExceeded) || ue.Timeout():
		reason = "no answer in time"
	case errors.As(ue.Err, &op) && op.Op == "dial":
		reason = op.Err.Error()
	default:
		return nil
	}
	base := ue.URL
	if u, perr := url.Parse(ue.URL); perr == nil && u.Host != "" {
		base = u.Scheme + "://" + u.Host
	}
	return &unreachableError{base: base, key: env.urlKeys[base], config: env.configPath, reason: reason}
}

// describe is unreachable's one line when err is a failure to reach a server, else err itself.
func describe(env *Env, err error) error {
	if u := unreachable(env, err); u != nil {
		return u
	}
	return err
}
