package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/transition-matrix/transition-matrix/verify"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/roomversions"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// targetClient talks to the target homeserver's client API as its appservice, acting as a local
// user with ?user_id= (the appservice's namespace is every user of the server name).
type targetClient struct {
	base  string
	token string
	hc    *http.Client

	devices verify.DeviceLogin // the device each member pages /messages through ("" = masquerade)
}

func newTargetClient(cfg *config.Config) *targetClient {
	return &targetClient{base: strings.TrimRight(cfg.Target.URL, "/"), token: string(cfg.Target.Token),
		hc: &http.Client{Timeout: 5 * time.Minute}} // a join or a backfilling page can take long
}

// targetError is a non-200 answer of the target.
type targetError struct {
	Status  int
	Errcode string
	Message string
}

func (e *targetError) Error() string {
	if e.Errcode != "" {
		return fmt.Sprintf("%d %s: %s", e.Status, e.Errcode, e.Message)
	}
	return fmt.Sprintf("%d %s", e.Status, e.Message)
}

// do sends a request as user and decodes a 200 answer into out. The token never appears in errors.
func (c *targetClient) do(ctx context.Context, method, path string, q url.Values, user string, out any) error {
	return c.doAs(ctx, method, path, q, user, "", nil, out)
}

// doAs is do with the user's own device token (masquerading when token is "") and a JSON body.
func (c *targetClient) doAs(ctx context.Context, method, path string, q url.Values, user, token string, reqBody any, out any) error {
	if q == nil {
		q = url.Values{}
	}
	if user != "" && token == "" {
		q.Set("user_id", user)
	}
	if token == "" {
		token = c.token
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader("{}")
		if reqBody != nil {
			enc, err := json.Marshal(reqBody)
			if err != nil {
				return err
			}
			body = bytes.NewReader(enc)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			return fmt.Errorf("%s %s: %w", method, path, ue.Err)
		}
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		te := &targetError{Status: resp.StatusCode}
		var m struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		if json.Unmarshal(data, &m) == nil && m.Errcode != "" {
			te.Errcode, te.Message = m.Errcode, m.Error
		} else {
			te.Message = strings.TrimSpace(string(data))
			if len(te.Message) > 200 {
				te.Message = te.Message[:200] + "…"
			}
		}
		return te
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	return nil
}

// joinedRooms lists the rooms user is joined to on the target.
func (c *targetClient) joinedRooms(ctx context.Context, user string) ([]string, error) {
	var out struct {
		JoinedRooms []string `json:"joined_rooms"`
	}
	err := c.do(ctx, http.MethodGet, "/_matrix/client/v3/joined_rooms", nil, user, &out)
	return out.JoinedRooms, err
}

// join asks the target to join user to a room through serverName.
func (c *targetClient) join(ctx context.Context, user, roomID, serverName string) error {
	return c.do(ctx, http.MethodPost, "/_matrix/client/v3/join/"+url.PathEscape(roomID), url.Values{"server_name": {serverName}}, user, nil)
}

// messagesPage is one /messages answer; End is empty when the page is the last the target has.
type messagesPage struct {
	Start string            `json:"start"`
	End   string            `json:"end"`
	Chunk []json.RawMessage `json:"chunk"`
}

// messages pages a room backwards from the token from ("" = the newest event).
func (c *targetClient) messages(ctx context.Context, user, roomID, from string, limit int) (*messagesPage, error) {
	q := url.Values{"dir": {"b"}, "limit": {strconv.Itoa(limit)}}
	if from != "" {
		q.Set("from", from)
	}
	token, err := c.deviceToken(ctx, user)
	if err != nil {
		return nil, err
	}
	var p messagesPage
	err = c.doAs(ctx, http.MethodGet, "/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages", q, user, token, nil, &p)
	return &p, err
}

// warmDeviceID is the device the appservice logs each member in with for /messages.
const warmDeviceID = "TRANSITIONMATRIXWARM"

// deviceToken logs user in through the appservice (m.login.application_service) once and returns
// that device's token. Real Conduit (0.10.12 and next) panics with a 500 on /messages for an
// appservice request without a device; a target that has no appservice login gets "" (masquerade).
func (c *targetClient) deviceToken(ctx context.Context, user string) (string, error) {
	return c.devices.Token(ctx, user, func(ctx context.Context, user string) (string, int, string, error) {
		var out struct {
			AccessToken string `json:"access_token"`
		}
		body := verify.AppserviceLogin(user, warmDeviceID, "transition-matrix warm (removed when warm ends)")
		err := c.doAs(ctx, http.MethodPost, "/_matrix/client/v3/login", nil, "", c.token, body, &out)
		var te *targetError
		if errors.As(err, &te) {
			return "", te.Status, te.Errcode, fmt.Errorf("appservice login of %s for /messages: %w", user, err)
		}
		if err != nil {
			return "", 0, "", fmt.Errorf("appservice login of %s for /messages: %w", user, err)
		}
		return out.AccessToken, 0, "", nil
	})
}

// logoutDevices logs out (and so deletes) every device deviceToken made.
func (c *targetClient) logoutDevices(ctx context.Context) error {
	return c.devices.LogoutAll(ctx, func(ctx context.Context, user, tok string) error {
		if err := c.doAs(ctx, http.MethodPost, "/_matrix/client/v3/logout", nil, user, tok, nil, nil); err != nil {
			return fmt.Errorf("logging out %s's warm device: %w", user, err)
		}
		return nil
	})
}

// migratingRoom is a room of Synapse as rejoin and warm see it.
type migratingRoom struct {
	ID      string
	Version string
	Members []string // local joined members, sorted
	// Skip says why the room is not attempted ("" = attempt it).
	Skip string
}

// migratingRooms lists Synapse's rooms with their local joined members; rooms without one, and
// rooms of versions Conduit cannot host, carry the reason they are skipped.
func migratingRooms(ctx context.Context, admin *synapseclient.AdminClient, serverName string) ([]migratingRoom, error) {
	all, err := admin.AllRooms(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing Synapse's rooms: %w", err)
	}
	var out []migratingRoom
	for _, r := range all {
		mr := migratingRoom{ID: r.RoomID, Version: r.Version}
		switch {
		case r.JoinedLocalMembers == 0:
			mr.Skip = "no local user is joined"
		case !roomversions.CanHost(r.Version):
			mr.Skip = "room version " + r.Version + " cannot be hosted by Conduit"
		default:
			members, err := admin.RoomMembers(ctx, r.RoomID)
			if err != nil {
				return nil, fmt.Errorf("members of %s: %w", r.RoomID, err)
			}
			for _, m := range members {
				if strings.HasSuffix(m, ":"+serverName) {
					mr.Members = append(mr.Members, m)
				}
			}
			slices.Sort(mr.Members)
			if len(mr.Members) == 0 {
				mr.Skip = "no local user is joined"
			}
		}
		out = append(out, mr)
	}
	slices.SortFunc(out, func(a, b migratingRoom) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// loadTargetConfig loads the configuration for a command that drives the target: Synapse's admin
// API, target.url (the -target flag overrides it) and target.token.
func loadTargetConfig(env *Env, path, targetFlag string) (*config.Config, error) {
	cfg, err := loadConfig(env, path, "synapse.url", "synapse.admin_token")
	if err != nil {
		return nil, err
	}
	if err := cfg.OverrideTargetURL(targetFlag); err != nil {
		return nil, usagef("%v", err)
	}
	noteURLs(env, cfg)
	if err := cfg.Require("target.url", "target.token"); err != nil {
		return nil, exitWith(exitCannotRun, fmt.Errorf("%s: %w", path, err))
	}
	return cfg, nil
}

// newAdminClient is a Synapse client for the admin API.
func newAdminClient(cfg *config.Config) (*synapseclient.AdminClient, error) {
	c, err := synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, FederationURL: cfg.Synapse.FederationURL,
		AdminToken: string(cfg.Synapse.AdminToken), ServerName: cfg.ServerName, Identity: cfg.Identity,
		Timeout: 30 * time.Second, MaxTotalWait: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	return c.Admin(), nil
}
