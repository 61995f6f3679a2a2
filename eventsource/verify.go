package eventsource

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// errWrongEvent is an answer that is not the event asked for (other room, other ID); it is never stored.
var errWrongEvent = errors.New("upstream answered another event")

// errOtherRoom marks an errWrongEvent whose event is of another room than the one asked about.
var errOtherRoom = errors.New("event of another room")

// checker verifies events fetched upstream before they are stored.
type checker struct {
	keys KeyFetcher
}

// check verifies one PDU of roomID (room version roomVersion); wantID, when set, must be its ID.
// It returns the event to store with its status, or an error for answers that must not be stored.
func (c *checker) check(ctx context.Context, roomID, roomVersion string, raw []byte, wantID string) (eventcache.Event, string, error) {
	if gjson.GetBytes(raw, "unsigned").Exists() {
		stripped, err := sjson.DeleteBytes(raw, "unsigned")
		if err != nil {
			return eventcache.Event{}, "", fmt.Errorf("removing unsigned: %w", err)
		}
		raw = stripped
	} else {
		raw = append([]byte(nil), raw...)
	}
	// The fast path confirms an event from one canonical pass (signatures, content hash, event
	// ID); what it cannot confirm (a failing signature, an unusual event, room version 12) takes
	// the full check below, which also gives the reason.
	keyOf := func(server string, keyID signing.KeyID) (ed25519.PublicKey, error) {
		return c.keys.PublicKey(ctx, server, string(keyID))
	}
	if info, err := signing.CheckPDU(roomVersion, raw, keyOf); err == nil || errors.Is(err, signing.ErrContentHash) {
		if info.RoomID != roomID {
			return eventcache.Event{}, "", fmt.Errorf("%w: event of room %q, asked for room %q", errWrongEvent, info.RoomID, roomID)
		}
		if wantID != "" && info.EventID != wantID {
			return eventcache.Event{}, "", fmt.Errorf("%w: asked for %s, got %s", errWrongEvent, wantID, info.EventID)
		}
		ev := eventcache.Event{ID: info.EventID, RoomID: roomID, RoomVersion: roomVersion, Depth: info.Depth,
			PrevEvents: info.PrevEvents, AuthEvents: info.AuthEvents, Type: info.Type, StateKey: info.StateKey,
			OriginServerTS: info.OriginServerTS, JSON: raw, Status: eventcache.StatusVerified}
		if err == nil {
			return ev, "", nil
		}
		return redactedVerdict(ev, roomVersion, raw)
	}
	p, err := synapseclient.ParsePDU(raw)
	if err != nil {
		return eventcache.Event{}, "", err
	}
	if p.RoomID != roomID {
		return eventcache.Event{}, "", fmt.Errorf("%w: event of room %q, asked for room %q", errWrongEvent, p.RoomID, roomID)
	}
	id, err := signing.EventID(roomVersion, raw)
	if err != nil {
		return eventcache.Event{}, "", fmt.Errorf("event ID: %w", err)
	}
	if wantID != "" && id != wantID {
		return eventcache.Event{}, "", fmt.Errorf("%w: asked for %s, got %s", errWrongEvent, wantID, id)
	}
	ev := eventcache.Event{ID: id, RoomID: roomID, RoomVersion: roomVersion, Depth: p.Depth,
		PrevEvents: p.PrevEvents, AuthEvents: p.AuthEvents, Type: p.Type, StateKey: p.StateKey,
		OriginServerTS: p.OriginServerTS, JSON: raw}
	ver, err := gmsl.GetRoomVersion(gmsl.RoomVersion(roomVersion))
	if err != nil {
		return eventcache.Event{}, "", fmt.Errorf("room version %q: %w", roomVersion, err)
	}
	pdu, err := ver.NewEventFromUntrustedJSON(raw)
	if err != nil {
		ev.Status = eventcache.StatusRejected
		return ev, "malformed: " + err.Error(), nil
	}
	// The full check asks for a key again even when the fast path just lacked it: replaying the
	// fast path's failure turned a lookup that a second ask answers into a rejected event.
	jv := &jsonVerifier{keys: c.keys}
	if err := gmsl.VerifyEventSignatures(ctx, pdu, jv, userIDForSender); err != nil {
		if ctx.Err() != nil {
			return eventcache.Event{}, "", ctx.Err()
		}
		if jv.transient != nil { // a key could not be fetched: try again later, store nothing
			return eventcache.Event{}, "", jv.transient
		}
		ev.Status = eventcache.StatusRejected
		return ev, "signature: " + err.Error(), nil
	}
	if !pdu.Redacted() {
		ev.Status = eventcache.StatusVerified
		return ev, "", nil
	}
	return redactedVerdict(ev, roomVersion, raw)
}

// redactedVerdict is the status of an event whose signatures hold and whose content hash does
// not: redacted when Synapse served it redacted, else pruned (stored and served redacted).
func redactedVerdict(ev eventcache.Event, roomVersion string, raw []byte) (eventcache.Event, string, error) {
	redacted, err := signing.RedactEvent(roomVersion, raw)
	if err != nil {
		return eventcache.Event{}, "", err
	}
	if sameContent(raw, redacted) {
		ev.Status = eventcache.StatusRedacted
		return ev, "", nil
	}
	ev.Status = eventcache.StatusPruned
	ev.JSON = redacted
	return ev, "content does not match its hash; serving the redacted form", nil
}

// sameContent reports whether raw's content is already what redaction keeps.
func sameContent(raw, redacted []byte) bool {
	a, b := gjson.GetBytes(raw, "content"), gjson.GetBytes(redacted, "content")
	if !a.IsObject() {
		return !b.Exists() || len(b.Map()) == 0
	}
	am, bm := a.Map(), b.Map()
	if len(am) != len(bm) {
		return false
	}
	for k := range am {
		if _, ok := bm[k]; !ok {
			return false
		}
	}
	return true
}

func userIDForSender(_ spec.RoomID, s spec.SenderID) (*spec.UserID, error) {
	return spec.NewUserID(string(s), true)
}

// jsonVerifier lets gomatrixserverlib decide which servers must sign an event, and checks those
// signatures with our keys: at least one key of the server must verify and none may fail.
type jsonVerifier struct {
	keys      KeyFetcher
	transient error // a key lookup that failed for another reason than an unknown key
}

func (v *jsonVerifier) VerifyJSONs(ctx context.Context, reqs []gmsl.VerifyJSONRequest) ([]gmsl.VerifyJSONResult, error) {
	out := make([]gmsl.VerifyJSONResult, len(reqs))
	for i, req := range reqs {
		out[i].Error = v.verify(ctx, string(req.ServerName), req.Message)
	}
	return out, nil
}

func (v *jsonVerifier) verify(ctx context.Context, server string, msg []byte) error {
	ids, err := signing.SignatureKeyIDs(server, msg)
	if err != nil {
		return err
	}
	if len(ids) == 0 {
		return fmt.Errorf("no signature of %s", server)
	}
	verified := 0
	var lastErr error
	for _, id := range ids {
		pub, err := v.keys.PublicKey(ctx, server, string(id))
		if err != nil {
			if !errors.Is(err, ErrUnknownKey) && v.transient == nil {
				v.transient = err
			}
			lastErr = err
			continue
		}
		if err := signing.VerifyJSON(server, id, pub, msg); err != nil {
			return fmt.Errorf("signature of %s with %s: %w", server, id, err)
		}
		verified++
	}
	if verified == 0 {
		return fmt.Errorf("no known key of %s signed it: %w", server, lastErr)
	}
	return nil
}
