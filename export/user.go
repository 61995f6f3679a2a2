package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/tidwall/sjson"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// errGone marks an item that vanished from Synapse while the export ran: it is skipped, not failed.
var errGone = errors.New("no longer exists on the server")

// exportUser reads one user from the admin and client APIs.
func (e *exporter) exportUser(ctx context.Context, sum synapseclient.UserSummary) (*exportfmt.UserFile, error) {
	admin := e.cli.Admin()
	uid := sum.Name
	details, err := admin.User(ctx, uid)
	if err != nil {
		if errors.Is(err, synapseclient.ErrNotFound) {
			return nil, errGone
		}
		return nil, err
	}
	u := &exportfmt.UserFile{
		UID: uid, Admin: bool(details.Admin), Deactivated: bool(details.Deactivated), Locked: bool(details.Locked) || bool(sum.Locked),
		ShadowBanned: bool(details.ShadowBanned), Erased: bool(details.Erased) || bool(sum.Erased), IsGuest: bool(details.IsGuest),
		UserType: details.UserType, AppserviceID: details.AppserviceID, CreationTS: sum.CreationTS,
		Threepids: nonNilSlice(details.ThreePIDs), ExternalIDs: nonNilSlice(details.ExternalIDs),
	}
	if sum.CreationTS == 0 {
		u.CreationTS = details.CreationTS * 1000
	}
	if h := e.passwordHashes[uid]; h != "" {
		u.PasswordHash = &h
	} else if details.PasswordHash != "" { // Synapse < 1.51
		h := details.PasswordHash
		u.PasswordHash = &h
	}
	ad, err := admin.AccountData(ctx, uid)
	if err != nil {
		return nil, err
	}
	u.AccountData = exportfmt.AccountData{Global: map[string]json.RawMessage{}, Rooms: map[string]map[string]json.RawMessage{}}
	for k, v := range ad.Global {
		u.AccountData.Global[k] = v
	}
	for r, m := range ad.Rooms {
		u.AccountData.Rooms[r] = map[string]json.RawMessage{}
		for k, v := range m {
			u.AccountData.Rooms[r][k] = v
		}
	}
	devices, err := admin.Devices(ctx, uid)
	if err != nil {
		return nil, err
	}
	sort.Slice(devices, func(i, j int) bool { return devices[i].DeviceID < devices[j].DeviceID })
	u.Devices = []json.RawMessage{}
	for _, d := range devices {
		u.Devices = append(u.Devices, d.Raw)
	}
	pushers, err := admin.Pushers(ctx, uid)
	if err != nil {
		return nil, err
	}
	sort.Slice(pushers, func(i, j int) bool {
		if pushers[i].AppID != pushers[j].AppID {
			return pushers[i].AppID < pushers[j].AppID
		}
		return pushers[i].Pushkey < pushers[j].Pushkey
	})
	u.Pushers = []json.RawMessage{}
	for _, p := range pushers {
		u.Pushers = append(u.Pushers, p.Raw)
	}
	joined, err := admin.JoinedRooms(ctx, uid)
	if err != nil {
		return nil, err
	}
	sort.Strings(joined)
	u.JoinedRooms = joined

	if (e.dbOnly || u.Locked && e.cfg.SynapseDB != nil) && uid != e.adminID {
		// No login-as, or a locked account (Synapse refuses its client API even to a login-as
		// token): everything the client API gave comes from Synapse's database.
		u.ClientAPIAs = exportfmt.AsSynapseDB
		e.stats.dbUsers.Add(1)
		if err := e.dbParts(ctx, u); err != nil {
			return nil, err
		}
		return u, nil
	}
	if u.Locked && uid != e.adminID {
		// Synapse answers a locked account's every client request M_USER_LOCKED, login-as tokens
		// included: the profile and public keys are read with the admin's token, and what only
		// the owner may read (push rules, room tags, key backup) is left out and said so.
		u.ClientAPIAs = exportfmt.ClientAPIAsLockedAdmin
		e.log.Warn(fmt.Sprintf("%s is locked: its push rules, room tags and key backup are not exported (Synapse refuses a locked account's client API); unlock it and rerun the export to include them", uid))
		c := e.cli.AdminAsUser()
		if err := readProfile(ctx, c, u); err != nil {
			return nil, err
		}
		return u, readPublicKeys(ctx, c, u)
	}
	client, done, err := e.clientFor(ctx, uid)
	if err != nil && loginAsRefused(err) && e.cfg.SynapseDB != nil {
		// Refused for this user only (a proxy, a policy): read the database for them.
		e.log.Warn(fmt.Sprintf("login-as refused for %s, reading its client data from Synapse's database: %v", uid, err))
		e.stats.dbUsers.Add(1)
		u.ClientAPIAs = exportfmt.AsSynapseDB
		if err := e.dbParts(ctx, u); err != nil {
			return nil, err
		}
		return u, nil
	}
	if err != nil {
		if errors.Is(err, synapseclient.ErrNotFound) {
			return nil, errGone
		}
		return nil, err
	}
	u.ClientAPIAs = exportfmt.AsLoginAs
	if uid == e.adminID {
		u.ClientAPIAs = exportfmt.AsAdminToken
	}
	err = e.clientParts(ctx, client, u)
	done()
	if err != nil && userLocked(err) {
		// Synapse ≥ 1.93 refuses a locked account's client API, login-as tokens included.
		if e.cfg.SynapseDB == nil {
			return nil, fmt.Errorf("%s is locked, and Synapse refuses its client API even to a login-as token (%v): rerun with -synapse-db DSN to read its E2EE keys, key backup, push rules and tags from Synapse's database, or unlock the account for the export", uid, err)
		}
		e.log.Warn(fmt.Sprintf("%s is locked: reading its client data from Synapse's database", uid))
		u.ClientAPIAs = exportfmt.AsSynapseDB
		e.stats.dbUsers.Add(1)
		err = e.dbParts(ctx, u)
	}
	if err != nil {
		return nil, err
	}
	return u, nil
}

// clientFor returns a client-API client acting as uid and a function that invalidates its token:
// the admin token for the admin itself, otherwise a short-lived login-as token.
func (e *exporter) clientFor(ctx context.Context, uid string) (*synapseclient.UserClient, func(), error) {
	if uid == e.adminID {
		return e.cli.AdminAsUser(), func() {}, nil
	}
	tok, err := e.cli.Admin().LoginAsUser(ctx, uid, e.now().Add(e.cfg.TokenValidity))
	if err != nil {
		return nil, nil, err
	}
	e.stats.tokens.Add(1)
	c := e.cli.User(tok)
	return c, func() {
		// Log out even when the export is being cancelled: the token must not outlive it.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := c.Logout(lctx); err != nil {
			e.stats.logoutFailures.Add(1)
			e.log.Warn(fmt.Sprintf("could not log out the login-as token of %s (it expires by itself in %s): %v", uid, e.cfg.TokenValidity, err))
		}
	}, nil
}

// readProfile fills the profile; any account's client (the admin's too) may read it.
func readProfile(ctx context.Context, c *synapseclient.UserClient, u *exportfmt.UserFile) error {
	prof, err := c.Profile(ctx, u.UID)
	switch {
	case errors.Is(err, synapseclient.ErrNotFound):
		u.Profile = json.RawMessage("{}")
	case err != nil:
		return err
	default:
		u.Profile = prof.Raw
	}
	return nil
}

// readPublicKeys fills the device and cross-signing public keys from /keys/query, which any
// account's client (the admin's too) may ask.
func readPublicKeys(ctx context.Context, c *synapseclient.UserClient, u *exportfmt.UserFile) error {
	keys, err := c.QueryKeys(ctx, u.UID)
	if err != nil {
		return err
	}
	u.E2E.DeviceKeys = map[string]json.RawMessage{}
	for dev, k := range keys.DeviceKeys[u.UID] {
		stripped, err := withoutUnsigned(k)
		if err != nil {
			return fmt.Errorf("device keys of %s: %w", dev, err)
		}
		u.E2E.DeviceKeys[dev] = stripped
	}
	u.E2E.MasterKey = keys.MasterKeys[u.UID]
	u.E2E.SelfSigningKey = keys.SelfSigningKeys[u.UID]
	u.E2E.UserSigningKey = keys.UserSigningKeys[u.UID]
	return nil
}

// clientParts fills what only the client API gives: profile, push rules, tags, E2E keys and backup.
func (e *exporter) clientParts(ctx context.Context, c *synapseclient.UserClient, u *exportfmt.UserFile) error {
	if err := readProfile(ctx, c, u); err != nil {
		return err
	}
	sync, err := c.SyncAccountData(ctx)
	if err != nil {
		return err
	}
	for _, ev := range sync.Global {
		if ev.Type == "m.push_rules" {
			u.AccountData.Global["m.push_rules"] = ev.Content
		}
	}
	tagged := map[string]bool{}
	for room, evs := range sync.Rooms {
		tagged[room] = true
		for _, ev := range evs {
			if ev.Type == "m.tag" {
				setRoomData(u, room, "m.tag", ev.Content)
			}
		}
	}
	// /sync shows tags of joined rooms only; ask for the other rooms the user has data in.
	for _, room := range sortedKeys(u.AccountData.Rooms) {
		if tagged[room] {
			continue
		}
		tags, err := c.RoomTags(ctx, u.UID, room)
		if err != nil {
			return err
		}
		if len(tags) > 0 {
			content, err := json.Marshal(map[string]any{"tags": tags})
			if err != nil {
				return err
			}
			setRoomData(u, room, "m.tag", content)
		}
	}
	if err := readPublicKeys(ctx, c, u); err != nil {
		return err
	}
	v, err := c.RoomKeysVersion(ctx)
	if err != nil {
		return err
	}
	if v != nil {
		rk, err := c.RoomKeys(ctx, v.Version)
		if err != nil {
			return err
		}
		kb := &exportfmt.KeyBackup{Version: v.Version, Algorithm: v.Algorithm, AuthData: v.AuthData, ETag: v.ETag, Count: v.Count,
			Rooms: map[string]map[string]json.RawMessage{}}
		for room, sessions := range rk.Rooms {
			if len(sessions) > 0 {
				kb.Rooms[room] = sessions
			}
		}
		u.E2E.KeyBackup = kb
	}
	return nil
}

func setRoomData(u *exportfmt.UserFile, room, typ string, content json.RawMessage) {
	m := u.AccountData.Rooms[room]
	if m == nil {
		m = map[string]json.RawMessage{}
		u.AccountData.Rooms[room] = m
	}
	m[typ] = content
}

// withoutUnsigned drops an object's top-level "unsigned" member, keeping the other bytes.
func withoutUnsigned(obj []byte) (json.RawMessage, error) {
	if !json.Valid(obj) {
		return nil, fmt.Errorf("not valid JSON")
	}
	out, err := sjson.DeleteBytes(obj, "unsigned")
	if err != nil {
		return nil, err
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func nonNilSlice[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
