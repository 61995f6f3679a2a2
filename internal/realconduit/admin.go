//go:build conduit

package realconduit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// AdminLocalpart is the localpart of the admin account FirstStart registers on Conduit; it must not
// be a Synapse user.
const AdminLocalpart = "tm-conduit-admin"

// AppserviceID is the ID of the appservice the shim's rejoin, warm and verify act through
// (docs/cutover.md).
const AppserviceID = "transition-matrix"

// Errors of the admin steps.
var (
	ErrRegister      = errors.New("realconduit: registering the admin account failed")
	ErrNotAdmin      = errors.New("realconduit: the admin account is not in the admin room")
	ErrAdminCommand  = errors.New("realconduit: the admin command failed")
	ErrAdminNoAnswer = errors.New("realconduit: the admin room did not answer")
)

// adminAnswerTimeout bounds the wait for the admin room's answer to a command.
const adminAnswerTimeout = 60 * time.Second

// Admin is the server admin account: the first account registered on Conduit, which Conduit
// makes a member of its admin room #admins.
type Admin struct {
	UserID      string
	Password    string
	AccessToken string
	AdminRoomID string
}

// FirstStart starts a fresh Conduit with registration open to a token, registers the admin
// account (the first registered account is made admin) and finds the admin room. Conduit is left
// running; the caller stops it before the import.
func (s *Server) FirstStart(ctx context.Context) (*Admin, error) {
	if s.RegistrationToken == "" {
		s.RegistrationToken = randomHex(16)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	c := NewClient(s.URL)
	a := &Admin{Password: randomHex(16)}
	req := map[string]any{"username": AdminLocalpart, "password": a.Password, "initial_device_display_name": "realconduit admin"}
	var uia struct {
		Session string `json:"session"`
	}
	raw, err := c.Raw(ctx, "POST", "/_matrix/client/v3/register", "", req)
	var se *StatusError
	if err == nil || !errors.As(err, &se) || se.Status != 401 {
		return nil, fmt.Errorf("%w: the first /register should ask for the registration token (401), got %v", ErrRegister, err)
	}
	if err := json.Unmarshal(raw, &uia); err != nil || uia.Session == "" {
		return nil, fmt.Errorf("%w: the 401 of /register has no UIA session: %s", ErrRegister, truncate(string(raw), 200))
	}
	req["auth"] = map[string]any{"type": "m.login.registration_token", "token": s.RegistrationToken, "session": uia.Session}
	var reg struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := c.Do(ctx, "POST", "/_matrix/client/v3/register", "", req, &reg); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRegister, err)
	}
	a.UserID, a.AccessToken = reg.UserID, reg.AccessToken
	var dir struct {
		RoomID string `json:"room_id"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/directory/room/"+Esc("#admins:"+s.ServerName), a.AccessToken, nil, &dir); err != nil {
		return nil, fmt.Errorf("%w: looking up #admins:%s: %v", ErrNotAdmin, s.ServerName, err)
	}
	a.AdminRoomID = dir.RoomID
	var joined struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	if err := c.Do(ctx, "GET", "/_matrix/client/v3/joined_rooms", a.AccessToken, nil, &joined); err != nil {
		return nil, err
	}
	for _, r := range joined.JoinedRooms {
		if r == a.AdminRoomID {
			return a, nil
		}
	}
	return nil, fmt.Errorf("%w: %s is joined to %v, not to %s", ErrNotAdmin, a.UserID, joined.JoinedRooms, a.AdminRoomID)
}

// Appservice is the registration docs/cutover.md describes: a non-exclusive namespace of every
// user of the server name.
type Appservice struct {
	ASToken string
	HSToken string
}

// NewAppservice makes random tokens.
func NewAppservice() Appservice {
	return Appservice{ASToken: randomHex(24), HSToken: randomHex(24)}
}

// YAML is the registration as the admin pastes it.
func (as Appservice) YAML(serverName string) string {
	return fmt.Sprintf(`id: %s
url: null
as_token: %s
hs_token: %s
sender_localpart: transition-matrix
rate_limited: false
namespaces:
  users:
    - exclusive: false
      regex: '@.*:%s'
  aliases: []
  rooms: []
`, AppserviceID, as.ASToken, as.HSToken, regexp.QuoteMeta(serverName))
}

// RegisterAppservice sends register-appservice with the registration to the admin room, as the
// admin, and waits for Conduit's answer.
func (s *Server) RegisterAppservice(ctx context.Context, a *Admin, as Appservice) error {
	body := "@conduit:" + s.ServerName + ": register-appservice\n```\n" + as.YAML(s.ServerName) + "```"
	answer, err := s.AdminCommand(ctx, a, body)
	if err != nil {
		return err
	}
	if !strings.Contains(answer, "Appservice registered") {
		return fmt.Errorf("%w: register-appservice answered %q", ErrAdminCommand, answer)
	}
	// Conduit does not create the appservice's sender user; requests without ?user_id= (shim
	// verify's whoami) are refused with "User does not exist" until the appservice registers it.
	body2 := map[string]any{"type": "m.login.application_service", "username": "transition-matrix", "inhibit_login": true}
	if err := NewClient(s.URL).Do(ctx, "POST", "/_matrix/client/v3/register", as.ASToken, body2, nil); err != nil {
		return fmt.Errorf("%w: registering the appservice's sender user: %v", ErrAdminCommand, err)
	}
	return nil
}

// AdminCommand sends one command to the admin room and returns the body of the server user's
// first message after it.
func (s *Server) AdminCommand(ctx context.Context, a *Admin, body string) (string, error) {
	c := NewClient(s.URL)
	var sent struct {
		EventID string `json:"event_id"`
	}
	txn := randomHex(8)
	path := "/_matrix/client/v3/rooms/" + Esc(a.AdminRoomID) + "/send/m.room.message/" + txn
	if err := c.Do(ctx, "PUT", path, a.AccessToken, map[string]any{"msgtype": "m.text", "body": body}, &sent); err != nil {
		return "", fmt.Errorf("%w: sending it: %v", ErrAdminCommand, err)
	}
	server := "@conduit:" + s.ServerName
	deadline := time.Now().Add(adminAnswerTimeout)
	tick := time.NewTicker(pollEvery * 4)
	defer tick.Stop()
	for {
		var page struct {
			Chunk []struct {
				EventID string `json:"event_id"`
				Sender  string `json:"sender"`
				Type    string `json:"type"`
				Content struct {
					Body string `json:"body"`
				} `json:"content"`
			} `json:"chunk"`
		}
		q := url.Values{"dir": {"b"}, "limit": {"20"}}
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/rooms/"+Esc(a.AdminRoomID)+"/messages?"+q.Encode(), a.AccessToken, nil, &page); err != nil {
			return "", err
		}
		// Newest first: the answer is a server message before (newer than) our own.
		for _, ev := range page.Chunk {
			if ev.EventID == sent.EventID {
				break
			}
			if ev.Sender == server && ev.Type == "m.room.message" {
				return ev.Content.Body, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%w within %s to %q; see %s", ErrAdminNoAnswer, adminAnswerTimeout, strings.SplitN(body, "\n", 2)[0], s.LogPath)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-tick.C:
		}
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
