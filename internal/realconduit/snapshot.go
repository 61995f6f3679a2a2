//go:build conduit

package realconduit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
)

// ErrPaging is returned when /messages does not reach m.room.create within maxPages.
var ErrPaging = errors.New("realconduit: /messages did not reach m.room.create")

// maxPages bounds one room's /messages walk.
const maxPages = 2000

// User is a local user as the seeder made it: the password and one access token Synapse issued.
type User struct {
	ID          string
	Password    string
	AccessToken string
	DeviceID    string
}

// Snapshot is what each user saw on Synapse through the client API, with their own token,
// before the cutover; Check compares Conduit's answers with it.
type Snapshot struct {
	ServerName string
	Users      []*UserSnapshot
}

// UserSnapshot is one user's view.
type UserSnapshot struct {
	User
	DeviceKeys      map[string]json.RawMessage // device ID → signed device keys ("unsigned" removed)
	CrossSigning    map[string]json.RawMessage // "master", "self_signing", "user_signing"
	Backup          *BackupSnapshot            // nil when the user has no key backup
	PushRules       json.RawMessage            // /pushrules/ (global)
	AccountData     map[string]json.RawMessage // global account data by type (from /sync)
	RoomAccountData map[string]map[string]json.RawMessage
	Tags            map[string]json.RawMessage // room → /tags answer
	Pushers         []json.RawMessage
	Rooms           map[string][]Event // joined room → /messages back to m.room.create, newest first
	Media           map[string]string  // mxc URI → sha256 of the bytes
}

// BackupSnapshot is the current key backup version and its keys.
type BackupSnapshot struct {
	Algorithm string          `json:"algorithm"`
	AuthData  json.RawMessage `json:"auth_data"`
	Keys      json.RawMessage `json:"keys"` // {"rooms": {...}}
	Count     int             `json:"count"`
}

// Event is one timeline event as /messages gives it, reduced to what must match.
type Event struct {
	EventID  string          `json:"event_id"`
	Type     string          `json:"type"`
	Sender   string          `json:"sender"`
	StateKey *string         `json:"state_key,omitempty"`
	Content  json.RawMessage `json:"content"`
}

// TakeSnapshot reads every user's view from the homeserver at baseURL (Synapse, before the cutover).
func TakeSnapshot(ctx context.Context, baseURL, serverName string, users []User) (*Snapshot, error) {
	c := NewClient(baseURL)
	snap := &Snapshot{ServerName: serverName}
	for _, u := range users {
		us, err := readUser(ctx, c, u)
		if err != nil {
			return nil, fmt.Errorf("snapshot of %s: %w", u.ID, err)
		}
		snap.Users = append(snap.Users, us)
	}
	return snap, nil
}

// readUser reads one user's view with the user's own token.
func readUser(ctx context.Context, c *Client, u User) (*UserSnapshot, error) {
	tok := u.AccessToken
	us := &UserSnapshot{User: u, RoomAccountData: map[string]map[string]json.RawMessage{}, Tags: map[string]json.RawMessage{}, Rooms: map[string][]Event{}, Media: map[string]string{}}
	var err error
	if us.DeviceKeys, us.CrossSigning, err = queryKeys(ctx, c, tok, u.ID); err != nil {
		return nil, err
	}
	if us.Backup, err = readBackup(ctx, c, tok); err != nil {
		return nil, err
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/pushrules/", tok, nil, &us.PushRules); err != nil {
		return nil, err
	}
	var pushers struct {
		Pushers []json.RawMessage `json:"pushers"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/pushers", tok, nil, &pushers); err != nil {
		return nil, err
	}
	us.Pushers = pushers.Pushers
	var sync struct {
		AccountData struct {
			Events []struct {
				Type    string          `json:"type"`
				Content json.RawMessage `json:"content"`
			} `json:"events"`
		} `json:"account_data"`
		Rooms struct {
			Join map[string]struct {
				AccountData struct {
					Events []struct {
						Type    string          `json:"type"`
						Content json.RawMessage `json:"content"`
					} `json:"events"`
				} `json:"account_data"`
			} `json:"join"`
		} `json:"rooms"`
	}
	filter := url.QueryEscape(`{"room":{"timeline":{"limit":1},"state":{"types":[]},"ephemeral":{"types":[]}},"presence":{"types":[]}}`)
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/sync?timeout=0&filter="+filter, tok, nil, &sync); err != nil {
		return nil, err
	}
	us.AccountData = map[string]json.RawMessage{}
	for _, ev := range sync.AccountData.Events {
		us.AccountData[ev.Type] = ev.Content
	}
	for room, r := range sync.Rooms.Join {
		for _, ev := range r.AccountData.Events {
			if us.RoomAccountData[room] == nil {
				us.RoomAccountData[room] = map[string]json.RawMessage{}
			}
			us.RoomAccountData[room][ev.Type] = ev.Content
		}
	}
	var joined struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/joined_rooms", tok, nil, &joined); err != nil {
		return nil, err
	}
	for _, room := range joined.JoinedRooms {
		var tags json.RawMessage
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/user/"+Esc(u.ID)+"/rooms/"+Esc(room)+"/tags", tok, nil, &tags); err != nil {
			return nil, err
		}
		us.Tags[room] = tags
		evs, err := History(ctx, c, tok, room)
		if err != nil {
			return nil, err
		}
		us.Rooms[room] = evs
	}
	// Media: the user's avatar and every mxc URI in the rooms' events.
	var profile struct {
		AvatarURL string `json:"avatar_url"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/profile/"+Esc(u.ID), tok, nil, &profile); err == nil && profile.AvatarURL != "" {
		us.Media[profile.AvatarURL] = ""
	}
	for _, evs := range us.Rooms {
		for _, ev := range evs {
			for _, mxc := range mxcURIs(ev.Content) {
				us.Media[mxc] = ""
			}
		}
	}
	for mxc := range us.Media {
		sum, err := DownloadSum(ctx, c, tok, mxc)
		if err != nil {
			return nil, err
		}
		us.Media[mxc] = sum
	}
	return us, nil
}

// queryKeys asks /keys/query for the user's own devices and cross-signing keys.
func queryKeys(ctx context.Context, c *Client, tok, user string) (map[string]json.RawMessage, map[string]json.RawMessage, error) {
	var ans struct {
		DeviceKeys      map[string]map[string]map[string]json.RawMessage `json:"device_keys"`
		MasterKeys      map[string]json.RawMessage                       `json:"master_keys"`
		SelfSigningKeys map[string]json.RawMessage                       `json:"self_signing_keys"`
		UserSigningKeys map[string]json.RawMessage                       `json:"user_signing_keys"`
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/keys/query", tok, map[string]any{"device_keys": map[string][]string{user: {}}}, &ans); err != nil {
		return nil, nil, err
	}
	devices := map[string]json.RawMessage{}
	for dev, keys := range ans.DeviceKeys[user] {
		delete(keys, "unsigned")
		b, _ := json.Marshal(keys)
		devices[dev] = canonical(b)
	}
	cs := map[string]json.RawMessage{}
	for name, m := range map[string]map[string]json.RawMessage{"master": ans.MasterKeys, "self_signing": ans.SelfSigningKeys, "user_signing": ans.UserSigningKeys} {
		if k, ok := m[user]; ok {
			cs[name] = canonical(k)
		}
	}
	return devices, cs, nil
}

// readBackup reads the current key backup version and all its keys; nil when there is none.
func readBackup(ctx context.Context, c *Client, tok string) (*BackupSnapshot, error) {
	var v struct {
		Algorithm string          `json:"algorithm"`
		AuthData  json.RawMessage `json:"auth_data"`
		Version   string          `json:"version"`
		Count     int             `json:"count"`
	}
	err := c.Do(ctx, "GET", "/_matrix/client/v3/room_keys/version", tok, nil, &v)
	var se *StatusError
	if errors.As(err, &se) && se.Status == 404 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys json.RawMessage
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/room_keys/keys?version="+url.QueryEscape(v.Version), tok, nil, &keys); err != nil {
		return nil, err
	}
	return &BackupSnapshot{Algorithm: v.Algorithm, AuthData: canonical(v.AuthData), Keys: canonical(keys), Count: v.Count}, nil
}

// History pages /messages backwards from the newest event until m.room.create; newest first.
func History(ctx context.Context, c *Client, tok, room string) ([]Event, error) {
	var out []Event
	from := ""
	for page := 0; page < maxPages; page++ {
		q := url.Values{"dir": {"b"}, "limit": {"100"}}
		if from != "" {
			q.Set("from", from)
		}
		var ans struct {
			Chunk []Event `json:"chunk"`
			End   string  `json:"end"`
		}
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/rooms/"+Esc(room)+"/messages?"+q.Encode(), tok, nil, &ans); err != nil {
			return nil, err
		}
		for i := range ans.Chunk {
			ans.Chunk[i].Content = canonical(ans.Chunk[i].Content)
		}
		out = append(out, ans.Chunk...)
		if len(out) > 0 && out[len(out)-1].Type == "m.room.create" {
			return out, nil
		}
		if ans.End == "" || len(ans.Chunk) == 0 {
			return out, fmt.Errorf("%w in %s: paging ended after %d events at %s", ErrPaging, room, len(out), lastType(out))
		}
		from = ans.End
	}
	return out, fmt.Errorf("%w in %s within %d pages", ErrPaging, room, maxPages)
}

func lastType(evs []Event) string {
	if len(evs) == 0 {
		return "no event"
	}
	return evs[len(evs)-1].Type + " " + evs[len(evs)-1].EventID
}

// DownloadSum downloads an mxc URI through the authenticated media endpoint and returns the
// bytes' sha256.
func DownloadSum(ctx context.Context, c *Client, tok, mxc string) (string, error) {
	rest, ok := strings.CutPrefix(mxc, "mxc://")
	server, id, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return "", fmt.Errorf("not an mxc URI: %q", mxc)
	}
	b, err := c.Raw(ctx, "GET", "/_matrix/client/v1/media/download/"+Esc(server)+"/"+Esc(id), tok, nil)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// mxcURIs are the mxc:// strings anywhere in an event's content.
func mxcURIs(content json.RawMessage) []string {
	var v any
	if json.Unmarshal(content, &v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			if strings.HasPrefix(x, "mxc://") {
				out = append(out, x)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	sort.Strings(out)
	return out
}

// canonical re-encodes JSON with sorted keys, so equal values compare equal as bytes.
func canonical(b json.RawMessage) json.RawMessage {
	var v any
	if len(b) == 0 || json.Unmarshal(b, &v) != nil {
		return b
	}
	out, _ := json.Marshal(v) // encoding/json sorts map keys
	return out
}
