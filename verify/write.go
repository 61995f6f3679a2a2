package verify

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/transition-matrix/transition-matrix/internal/atomicfile"
)

// WriteFiles writes report.json and report.md into dir (created 0700; files 0600, written
// atomically) and returns their paths.
func WriteFiles(dir string, rep *Report) (jsonPath, mdPath string, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	var j bytes.Buffer
	enc := json.NewEncoder(&j)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		return "", "", err
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, rep); err != nil {
		return "", "", err
	}
	jsonPath, mdPath = filepath.Join(dir, "report.json"), filepath.Join(dir, "report.md")
	if err := atomicfile.Write(jsonPath, j.Bytes()); err != nil {
		return "", "", err
	}
	if err := atomicfile.Write(mdPath, md.Bytes()); err != nil {
		return "", "", err
	}
	return jsonPath, mdPath, nil
}

// verdict is the report's one-line answer.
func verdict(rep *Report) string {
	s := rep.Summary
	switch rep.Result {
	case ResultOK:
		return fmt.Sprintf("Everything arrived: %s in %s, %s.", count(s.EventsArrived, "event"), count(s.RoomsOK, "room"), count(s.UsersOK, "user"))
	case ResultMissing:
		return fmt.Sprintf("Something is missing: %s and %s with problems (%s missing).",
			count(s.RoomsWithProblems, "room"), count(s.UsersWithProblems, "user"), count(s.EventsMissing, "event"))
	}
	return fmt.Sprintf("Verification is incomplete: %s and %s could not be checked; %s and %s with problems.",
		count(s.RoomsError, "room"), count(s.UsersError, "user"), count(s.RoomsWithProblems, "room"), count(s.UsersWithProblems, "user"))
}

// count says "1 room", "2 rooms".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// WriteSummary prints the verdict and the summary table, then each room with a problem with its
// missing count, then each user with a problem.
func WriteSummary(w io.Writer, rep *Report) error {
	s := rep.Summary
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "ROOMS\tOK\tMISSING\tSTATE DIFFERS\tNOT JOINED\tUNSUPPORTED\tNO LOCAL MEMBERS\tERROR\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", s.Rooms, s.RoomsOK, s.RoomsMissing, s.RoomsStateDiffers,
		s.RoomsNotJoined, s.RoomsUnsupported, s.RoomsNoLocalMembers, s.RoomsError)
	fmt.Fprintf(tw, "\nEVENTS\tARRIVED\tMISSING\tHIDDEN\tEXTRA\tUNSERVABLE\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", s.EventsExpected, s.EventsArrived, s.EventsMissing, s.EventsHidden, s.EventsExtra, s.EventsUnservable)
	fmt.Fprintf(tw, "\nUSERS\tOK\tDIFFER\tMISSING\tSKIPPED\tERROR\n")
	fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", s.Users, s.UsersOK, s.UsersDiffer, s.UsersMissing, s.UsersSkipped, s.UsersError)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	for _, r := range rep.Rooms {
		if !r.Problem(rep.Strict) {
			continue
		}
		switch r.Status {
		case RoomMissing:
			fmt.Fprintf(w, "room %s: %s, %d of %d events missing\n", r.RoomID, r.Status, r.Missing, r.Expected)
		case RoomStateDiffers:
			fmt.Fprintf(w, "room %s: %s, %d pieces of state missing, %d differ\n", r.RoomID, r.Status, len(r.State.Missing), len(r.State.Differs))
		default:
			fmt.Fprintf(w, "room %s: %s: %s\n", r.RoomID, r.Status, r.Error)
		}
	}
	for _, u := range rep.Users {
		if !u.Problem() {
			continue
		}
		detail := strings.Join(u.Problems, "; ")
		if u.Error != "" {
			detail = strings.TrimPrefix(detail+"; "+u.Error, "; ")
		}
		fmt.Fprintf(w, "user %s: %s: %s\n", u.UserID, u.Status, detail)
	}
	_, err := fmt.Fprintln(w, verdict(rep))
	return err
}

// WriteMarkdown writes the readable report: the verdict and summary first, then the rooms with
// problems, then the users with problems, then what was only noted.
func WriteMarkdown(w io.Writer, rep *Report) error {
	s := rep.Summary
	b := &strings.Builder{}
	fmt.Fprintf(b, "# Verification of %s\n\n", mdText(rep.ServerName))
	fmt.Fprintf(b, "**%s**\n\n", verdict(rep))
	fmt.Fprintf(b, "Source: %s. Target: %s. From %s to %s (%.1f s).\n\n", mdText(rep.Source), mdText(rep.Target),
		rep.StartedAt.Format("2006-01-02 15:04:05Z"), rep.FinishedAt.Format("15:04:05Z"), float64(s.ElapsedMilliseconds)/1000)
	b.WriteString("## Summary\n\n| | total | ok | problems |\n| --- | ---: | ---: | ---: |\n")
	fmt.Fprintf(b, "| rooms | %d | %d | %d |\n| users | %d | %d | %d |\n\n", s.Rooms, s.RoomsOK, s.RoomsWithProblems, s.Users, s.UsersOK, s.UsersWithProblems)
	b.WriteString("| events | count | what |\n| --- | ---: | --- |\n")
	fmt.Fprintf(b, "| expected | %d | the rooms' timelines as the source holds them |\n", s.EventsExpected)
	fmt.Fprintf(b, "| arrived | %d | seen on the target by a local member |\n", s.EventsArrived)
	fmt.Fprintf(b, "| missing | %d | not on the target |\n", s.EventsMissing)
	fmt.Fprintf(b, "| hidden | %d | from before any local user joined: Synapse itself only has them redacted, no member may see them |\n", s.EventsHidden)
	fmt.Fprintf(b, "| extra | %d | on the target only (its rejoin, messages sent since) |\n", s.EventsExtra)
	fmt.Fprintf(b, "| unservable | %d | failed verification at the shim (see `shim archive`): never served |\n\n", s.EventsUnservable)
	fmt.Fprintf(b, "Rooms: %d ok, %d missing events, %d state differs, %d not joined, %d unsupported version, %d without local members, %d errors.\n\n",
		s.RoomsOK, s.RoomsMissing, s.RoomsStateDiffers, s.RoomsNotJoined, s.RoomsUnsupported, s.RoomsNoLocalMembers, s.RoomsError)

	b.WriteString("## Rooms with problems\n\n")
	n := 0
	for _, r := range rep.Rooms {
		if !r.Problem(rep.Strict) {
			continue
		}
		n++
		fmt.Fprintf(b, "### %s\n\n- status: **%s** (room version %s)\n", mdCode(r.RoomID), r.Status, mdText(r.RoomVersion))
		if r.AsUser != "" {
			fmt.Fprintf(b, "- asked as %s\n", mdCode(r.AsUser))
		}
		if r.Error != "" {
			fmt.Fprintf(b, "- %s\n", mdText(r.Error))
		}
		if r.Expected > 0 {
			fmt.Fprintf(b, "- events: %d expected, %d arrived, **%d missing**, %d hidden, %d extra\n", r.Expected, r.Arrived, r.Missing, r.Hidden, r.Extra)
		}
		if len(r.MissingIDs) > 0 {
			fmt.Fprintf(b, "- oldest missing: %s", mdCodes(r.MissingIDs))
			if r.Missing > len(r.MissingIDs) {
				fmt.Fprintf(b, " and %d more", r.Missing-len(r.MissingIDs))
			}
			b.WriteString("\n")
		}
		if r.State != nil {
			for _, e := range r.State.Missing {
				fmt.Fprintf(b, "- state %s %s: missing (expected %s)\n", mdCode(e.Type), mdCode(e.StateKey), mdCode(e.Expected))
			}
			for _, e := range r.State.Differs {
				fmt.Fprintf(b, "- state %s %s: %s, expected %s\n", mdCode(e.Type), mdCode(e.StateKey), mdCode(e.Actual), mdCode(e.Expected))
			}
		}
		b.WriteString("\n")
	}
	if n == 0 {
		b.WriteString("None.\n\n")
	}

	b.WriteString("## Users with problems\n\n")
	n = 0
	for _, u := range rep.Users {
		if !u.Problem() {
			continue
		}
		n++
		fmt.Fprintf(b, "### %s\n\n- status: **%s** — profile %s, devices %s, account data %s, keys %s, key backup %s",
			mdCode(u.UserID), u.Status, u.Profile, u.Devices, u.AccountData, u.Keys, u.KeyBackup)
		if u.Sessions != "" {
			fmt.Fprintf(b, ", sessions %s", u.Sessions)
		}
		b.WriteString("\n")
		for _, p := range u.Problems {
			fmt.Fprintf(b, "- %s\n", mdText(p))
		}
		if u.Error != "" {
			fmt.Fprintf(b, "- error: %s\n", mdText(u.Error))
		}
		b.WriteString("\n")
	}
	if n == 0 {
		b.WriteString("None.\n\n")
	}

	b.WriteString("## Noted\n\n")
	n = 0
	for _, r := range rep.Rooms {
		if r.Problem(rep.Strict) || (r.Status == RoomOK && r.Hidden+r.Unservable == 0) {
			continue
		}
		n++
		switch r.Status {
		case RoomOK:
			fmt.Fprintf(b, "- room %s: %d hidden, %d unservable events\n", mdCode(r.RoomID), r.Hidden, r.Unservable)
		default:
			fmt.Fprintf(b, "- room %s: %s — %s\n", mdCode(r.RoomID), r.Status, mdText(r.Error))
		}
	}
	for _, u := range rep.Users {
		if u.Status == UserSkipped {
			n++
			fmt.Fprintf(b, "- user %s: skipped (%s)\n", mdCode(u.UserID), mdText(u.Error))
		}
	}
	if n == 0 {
		b.WriteString("Nothing.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// mdText escapes what Markdown would interpret in free text (IDs come from the server and may hold anything).
func mdText(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "`", "\\`", "*", "\\*", "_", "\\_", "[", "\\[", "]", "\\]", "<", "&lt;", ">", "&gt;", "|", "\\|", "#", "\\#", "\n", " ")
	return r.Replace(s)
}

// mdCode puts s in a code span, with a fence longer than any backtick run in it.
func mdCode(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") || s == "" {
		pad = " "
	}
	return fence + pad + s + pad + fence
}

func mdCodes(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = mdCode(s)
	}
	return strings.Join(out, ", ")
}
