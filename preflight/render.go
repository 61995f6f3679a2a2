package preflight

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as one indented JSON object (the shape docs/check.md describes).
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// TextOptions tune the human report.
type TextOptions struct {
	// Color marks severities with ANSI colours (for a terminal).
	Color bool
	// Width wraps messages to this many columns; 0 does not wrap.
	Width int
}

const (
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[33m"
	ansiDim    = "\x1b[2m"
	ansiGreen  = "\x1b[32m"
	ansiReset  = "\x1b[0m"
)

// summaryCodes are info findings the summary lines already show.
var summaryCodes = map[string]bool{CodeSynapseVersion: true, CodeUsers: true, CodeRooms: true, CodeMedia: true, CodeDiskSpace: true}

// WriteText writes the report for a person: a summary, the admin endpoints, then a table of
// findings, blockers first, and the outcome.
func (r *Report) WriteText(w io.Writer, opt TextOptions) error {
	ew := &errWriter{w: w}
	paint := func(code, s string) string {
		if !opt.Color {
			return s
		}
		return code + s + ansiReset
	}
	fmt.Fprintf(ew, "Preflight of %s", r.ServerName)
	if r.SynapseURL != "" {
		fmt.Fprintf(ew, " at %s", r.SynapseURL)
	}
	fmt.Fprintln(ew)
	version := r.SynapseVersion
	if version == "" {
		version = "unknown"
	}
	fmt.Fprintf(ew, "Synapse %s", version)
	if r.AdminUser != "" {
		fmt.Fprintf(ew, ", admin token of %s", r.AdminUser)
	}
	fmt.Fprint(ew, "\n\n")

	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	if u := r.Users; u != nil {
		fmt.Fprintf(tw, "Users\t%d: %d active, %d deactivated, %s, %s, %d active without a password\n",
			u.Total, u.Active, u.Deactivated, plural(u.Admins, "admin"), plural(u.Guests, "guest"), u.WithoutPassword)
	}
	if n := r.Rooms; n != nil {
		fmt.Fprintf(tw, "Rooms\t%d: %s; %d with no local member\n", n.Total, versionCounts(n.ByVersion, "v%s %d"), n.NoLocalMember)
		if n.EventsEstimate >= 0 {
			fmt.Fprintf(tw, "Events\tabout %d in rooms with a local member (sum of the newest depths)\n", n.EventsEstimate)
		}
	}
	if m := r.Media; m != nil {
		fmt.Fprintf(tw, "Media\t%d local files, %s, from %d users\n", m.Files, formatBytes(uint64(m.Bytes)), m.Users)
	}
	for i, d := range r.Disk {
		label := ""
		if i == 0 {
			label = "Disk"
		}
		need := "no estimate"
		if d.EstimateBytes > 0 {
			need = "about " + formatBytes(d.EstimateBytes) + " needed"
		}
		shared := ""
		if d.SharedWith != "" {
			shared = " (same file system as the " + d.SharedWith + ")"
		}
		fmt.Fprintf(tw, "%s\t%s %s: %s free, %s%s\n", label, d.Purpose, d.Path, formatBytes(d.FreeBytes), need, shared)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if len(r.Endpoints) > 0 {
		fmt.Fprintln(ew)
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ADMIN ENDPOINT\tSINCE\tOFFERED\tUSED FOR")
		for _, e := range r.Endpoints {
			offered := paint(ansiGreen, "yes")
			if !e.Available {
				offered = "no"
				if e.Required {
					offered = paint(ansiRed, "NO")
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", e.Name, e.Since, offered, e.UsedFor)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	var shown []Finding
	for _, f := range r.Findings {
		if f.Severity == Info && summaryCodes[f.Code] {
			continue
		}
		shown = append(shown, f)
	}
	if len(shown) > 0 {
		fmt.Fprintln(ew)
		codeWidth, sevWidth := len("CODE"), len("SEVERITY")
		for _, f := range shown {
			codeWidth = max(codeWidth, len(f.Code))
		}
		indent := sevWidth + 2 + codeWidth + 2
		fmt.Fprintf(ew, "%-*s  %-*s  %s\n", sevWidth, "SEVERITY", codeWidth, "CODE", "MESSAGE")
		for _, f := range shown {
			sev := strings.ToUpper(string(f.Severity))
			if f.Accepted {
				sev = "ACCEPTED"
			}
			padded := fmt.Sprintf("%-*s", sevWidth, sev)
			switch {
			case f.Severity == Blocker:
				padded = paint(ansiRed, padded)
			case f.Severity == Warning:
				padded = paint(ansiYellow, padded)
			default:
				padded = paint(ansiDim, padded)
			}
			lines := wrap(f.Message, opt.Width-indent)
			fmt.Fprintf(ew, "%s  %-*s  %s\n", padded, codeWidth, f.Code, lines[0])
			for _, l := range lines[1:] {
				fmt.Fprintf(ew, "%*s%s\n", indent, "", l)
			}
		}
	}

	if len(r.Errors) > 0 {
		fmt.Fprintf(ew, "\n%s\n", paint(ansiRed, "CHECKS THAT COULD NOT RUN (the report is incomplete)"))
		for _, e := range r.Errors {
			fmt.Fprintf(ew, "  %s: %s\n", e.Check, e.Error)
		}
	}

	fmt.Fprintln(ew)
	outcome := fmt.Sprintf("%s, %s: ", plural(r.Blockers, "blocker"), plural(r.Warnings, "warning"))
	switch r.ExitStatus {
	case 0:
		outcome += paint(ansiGreen, "ready to migrate") + " (exit status 0)"
	case 1:
		outcome += paint(ansiRed, "not ready") + ": resolve every blocker (exit status 1)"
	default:
		outcome += paint(ansiRed, "the check is incomplete") + " (exit status 2)"
	}
	fmt.Fprintln(ew, outcome)
	return ew.err
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// wrap splits s into lines of at most width columns at spaces; width < 20 does not wrap.
func wrap(s string, width int) []string {
	if width < 20 || len(s) <= width {
		return []string{s}
	}
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		switch {
		case line == "":
			line = word
		case len(line)+1+len(word) <= width:
			line += " " + word
		default:
			lines = append(lines, line)
			line = word
		}
	}
	return append(lines, line)
}

// errWriter keeps the first write error so the rendering code can stay linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
