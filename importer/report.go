package importer

import (
	"sort"
	"time"
)

// Changes counts the rows an update wrote or would write (new or different values), by tree.
type Changes map[string]int

// Total is the number of changed rows in every tree.
func (c Changes) Total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c Changes) add(o Changes) {
	for k, v := range o {
		c[k] += v
	}
}

// Report is what an import did (or, for a dry run, would do). It names users, never secrets.
type Report struct {
	DryRun     bool
	ServerName string
	// Target describes the database written (path, version, media layout).
	Target string

	// Users is the number of user files; Imported how many were written (or planned) whole.
	Users, Imported int
	// Planned sums what the export and Synapse's database hold for Conduit.
	Planned Counts
	// Rows are the rows changed by tree; a second run over the same database changes none.
	Rows Changes

	// PasswordReset lists users with a bcrypt hash: they log in on a Conduit with the
	// transition-matrix patch (bcrypt fallback), and need a password reset on an unpatched one.
	PasswordReset []string
	// NoPassword lists users without a password in Synapse (SSO, appservices): they got UnusableHash.
	NoPassword []string
	// Deactivated lists deactivated users (empty hash, as Conduit marks them).
	Deactivated []string
	// MustLogIn lists users with at least one device whose session was not carried (no
	// -synapse-db, or Synapse had no token for it): those devices must log in again.
	MustLogIn []string
	// SessionsCarried is false when no Synapse database was given.
	SessionsCarried bool
	// SignInAgain lists the devices whose session was an OAuth 2.0 session of the Matrix
	// Authentication Service (its tokens expire within minutes and MAS refreshes them): they
	// must sign in again on Conduit.
	SignInAgain []DeviceRef
	// FallbackKeys is how many fallback keys were not carried (Conduit has no fallback keys:
	// clients upload new ones). SkippedTokens are tokens of no exported device, or expired;
	// ExpiringTokens had an expiry in Synapse that Conduit does not keep.
	FallbackKeys, SkippedTokens, ExpiringTokens int

	// Media sums the media items.
	Media MediaReport
	// Notes say what was not carried for a user, and why.
	Notes []Note
	// Failed are users or media items that could not be written (the import exits 1).
	Failed  []Failure
	Elapsed time.Duration
}

// Counts are the items the import carries.
type Counts struct {
	Devices, DeviceKeys, CrossSigningKeys, AccessTokens, OneTimeKeys int
	BackupVersions, BackupSessions, AccountData, Pushers             int
}

func (c *Counts) addPlan(p *UserPlan) {
	for _, d := range p.Devices {
		c.Devices++
		if d.Keys != nil {
			c.DeviceKeys++
		}
		if d.AccessToken != "" {
			c.AccessTokens++
		}
		c.OneTimeKeys += len(d.OneTimeKeys)
	}
	for _, k := range [][]byte{p.MasterKey, p.SelfSigningKey, p.UserSigningKey} {
		if k != nil {
			c.CrossSigningKeys++
		}
	}
	if p.Backup != nil {
		c.BackupVersions++
		c.BackupSessions += len(p.Backup.Sessions)
	}
	c.AccountData += len(p.AccountData)
	c.Pushers += len(p.Pushers)
}

// MediaReport sums the media the import carried.
type MediaReport struct {
	// Listed is what Synapse's admin API lists; Carried how many were written (or planned).
	Listed, Carried int
	Bytes           int64
	// Skipped are media items not carried, and why (quarantined, file missing).
	Skipped []Failure
	// NoSource is true when no media source was configured (media not imported).
	NoSource bool
}

// DeviceRef names one device of a user.
type DeviceRef struct {
	UserID, DeviceID string
}

// Note is something of a user the import did not carry.
type Note struct {
	UserID, Text string
}

// Failure is an item that failed or was refused, and why.
type Failure struct {
	Kind string // "user", "media", "keys", "counters"
	ID   string
	Err  string
}

func (r *Report) sort() {
	for _, s := range [][]string{r.PasswordReset, r.NoPassword, r.Deactivated, r.MustLogIn} {
		sort.Strings(s)
	}
	sort.SliceStable(r.Notes, func(i, j int) bool { return r.Notes[i].UserID < r.Notes[j].UserID })
	sort.Slice(r.SignInAgain, func(i, j int) bool {
		a, b := r.SignInAgain[i], r.SignInAgain[j]
		return a.UserID < b.UserID || a.UserID == b.UserID && a.DeviceID < b.DeviceID
	})
	sortFailures(r.Failed)
	sortFailures(r.Media.Skipped)
}

func sortFailures(f []Failure) {
	sort.SliceStable(f, func(i, j int) bool {
		if f[i].Kind != f[j].Kind {
			return f[i].Kind < f[j].Kind
		}
		return f[i].ID < f[j].ID
	})
}
