package dendritetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/regsecret"
)

// maxBody bounds every client API answer the harness reads.
const maxBody = 16 << 20

var httpClient = &http.Client{Timeout: 30 * time.Second}

// User is a local account on the Dendrite, acting through the client-server API.
type User struct {
	ID    string
	Token string
	base  string
	txn   int
}

// Register creates a user with shared-secret registration and returns it logged in.
func (s *Server) Register(ctx context.Context, localpart string) (*User, error) {
	const p = "/_synapse/admin/v1/register"
	var nonce struct {
		Nonce string `json:"nonce"`
	}
	if err := call(ctx, "GET", s.URL+p, "", nil, &nonce); err != nil {
		return nil, err
	}
	pw := make([]byte, 16)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	password := hex.EncodeToString(pw)
	body := map[string]any{
		"nonce":    nonce.Nonce,
		"username": localpart,
		"password": password,
		"admin":    false,
		"mac":      regsecret.MAC(s.sharedSecret, nonce.Nonce, localpart, password, false),
	}
	var out struct {
		UserID      string `json:"user_id"`
		AccessToken string `json:"access_token"`
	}
	if err := call(ctx, "POST", s.URL+p, "", body, &out); err != nil {
		return nil, err
	}
	if out.UserID == "" || out.AccessToken == "" {
		return nil, fmt.Errorf("POST %s: answer has no user_id or access_token", p)
	}
	return &User{ID: out.UserID, Token: out.AccessToken, base: s.URL}, nil
}

// CreateRoom creates a room with the given /createRoom body and returns its ID.
// https://spec.matrix.org/v1.16/client-server-api/#post_matrixclientv3createroom
func (u *User) CreateRoom(ctx context.Context, req map[string]any) (string, error) {
	var out struct {
		RoomID string `json:"room_id"`
	}
	if err := call(ctx, "POST", u.base+"/_matrix/client/v3/createRoom", u.Token, req, &out); err != nil {
		return "", err
	}
	if out.RoomID == "" {
		return "", fmt.Errorf("POST /createRoom: answer has no room_id")
	}
	return out.RoomID, nil
}

// Send sends a message event with a fresh transaction ID and returns its event ID.
// https://spec.matrix.org/v1.16/client-server-api/#put_matrixclientv3roomsroomidsendeventtypetxnid
func (u *User) Send(ctx context.Context, roomID, eventType string, content any) (string, error) {
	u.txn++
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/send/" + url.PathEscape(eventType) + "/tm" + strconv.Itoa(u.txn)
	return u.putEvent(ctx, p, content)
}

// SetState sends a state event and returns its event ID.
// https://spec.matrix.org/v1.16/client-server-api/#put_matrixclientv3roomsroomidstateeventtypestatekey
func (u *User) SetState(ctx context.Context, roomID, eventType, stateKey string, content any) (string, error) {
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/state/" + url.PathEscape(eventType) + "/" + url.PathEscape(stateKey)
	return u.putEvent(ctx, p, content)
}

func (u *User) putEvent(ctx context.Context, p string, content any) (string, error) {
	var out struct {
		EventID string `json:"event_id"`
	}
	if err := call(ctx, "PUT", u.base+p, u.Token, content, &out); err != nil {
		return "", err
	}
	if out.EventID == "" {
		return "", fmt.Errorf("PUT %s: answer has no event_id", p)
	}
	return out.EventID, nil
}

// State returns the content of one state event of the room.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidstateeventtypestatekey
func (u *User) State(ctx context.Context, roomID, eventType, stateKey string) (map[string]any, error) {
	var out map[string]any
	p := "/_matrix/client/v3/rooms/" + url.PathEscape(roomID) + "/state/" + url.PathEscape(eventType) + "/" + url.PathEscape(stateKey)
	if err := call(ctx, "GET", u.base+p, u.Token, nil, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// ClientEvent is the part of a client-API event the harness looks at.
type ClientEvent struct {
	EventID  string  `json:"event_id"`
	Type     string  `json:"type"`
	StateKey *string `json:"state_key"`
	Sender   string  `json:"sender"`
}

// Timeline pages /messages backwards from the end of the room until it is exhausted and returns
// every event the user can see, newest first, each once (Dendrite 0.15.2 answers the oldest event
// again on the page after the one that reached it), with the number of repeats dropped. It reads
// the room twice, with pages of 100 and of 37 events, and merges the two: Dendrite now and then
// leaves out an event at a page boundary, and the boundaries of the two reads differ.
// https://spec.matrix.org/v1.16/client-server-api/#get_matrixclientv3roomsroomidmessages
func (u *User) Timeline(ctx context.Context, roomID string) (events []ClientEvent, repeats int, err error) {
	first, repeats, err := u.timelineRead(ctx, roomID, 100)
	if err != nil {
		return nil, 0, err
	}
	second, _, err := u.timelineRead(ctx, roomID, 37)
	if err != nil {
		return nil, 0, err
	}
	return mergeTimelines(first, second), repeats, nil
}

// mergeTimelines returns a with every event of b it lacks, each placed after the event before it
// in b.
func mergeTimelines(a, b []ClientEvent) []ClientEvent {
	have := map[string]bool{}
	for _, e := range a {
		have[e.EventID] = true
	}
	out := append([]ClientEvent(nil), a...)
	for i, e := range b {
		if have[e.EventID] {
			continue
		}
		at := 0
		if i > 0 {
			at = slices.IndexFunc(out, func(x ClientEvent) bool { return x.EventID == b[i-1].EventID }) + 1
		}
		out = slices.Insert(out, at, e)
		have[e.EventID] = true
	}
	return out
}

// timelineRead is one backwards read of the whole room, limit events a page.
func (u *User) timelineRead(ctx context.Context, roomID string, limit int) (events []ClientEvent, repeats int, err error) {
	var all []ClientEvent
	seen := map[string]bool{}
	from := ""
	for page := 0; ; page++ {
		if page > 10_000 {
			return nil, 0, fmt.Errorf("/messages of %s: still paginating after %d pages", roomID, page)
		}
		q := url.Values{"dir": {"b"}, "limit": {strconv.Itoa(limit)}}
		if from != "" {
			q.Set("from", from)
		}
		var out struct {
			Chunk []ClientEvent `json:"chunk"`
			End   string        `json:"end"`
		}
		if err := call(ctx, "GET", u.base+"/_matrix/client/v3/rooms/"+url.PathEscape(roomID)+"/messages?"+q.Encode(), u.Token, nil, &out); err != nil {
			return nil, 0, err
		}
		fresh := 0
		for _, e := range out.Chunk {
			if !seen[e.EventID] {
				seen[e.EventID] = true
				all = append(all, e)
				fresh++
			} else {
				repeats++
			}
		}
		if fresh == 0 || out.End == "" || out.End == from {
			return all, repeats, nil
		}
		from = out.End
	}
}

// call sends a JSON request and decodes a 2xx answer into out; other answers become an error with
// the status and the start of the body (never the token).
func call(ctx context.Context, method, u, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	where := method + " " + strings.SplitN(req.URL.Path, "?", 2)[0]
	resp, err := httpClient.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return fmt.Errorf("%s: reading the answer: %w", where, err)
	}
	if len(b) > maxBody {
		return fmt.Errorf("%s: answer longer than %d bytes", where, maxBody)
	}
	if resp.StatusCode/100 != 2 {
		if len(b) > 500 {
			b = b[:500]
		}
		return fmt.Errorf("%s: HTTP %d: %s", where, resp.StatusCode, b)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decoding the answer: %w", where, err)
	}
	return nil
}
