package signing

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/tidwall/gjson"
)

// RedactEvent applies the redaction algorithm of roomVersion to a PDU; event signatures and the
// reference hash are computed over this form.
func RedactEvent(roomVersion string, pdu []byte) ([]byte, error) {
	impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(roomVersion))
	if err != nil {
		return nil, fmt.Errorf("room version %q: %w", roomVersion, err)
	}
	return impl.RedactEventJSON(pdu)
}

// VerifyEventSignature checks serverName's signature with keyID on a PDU of roomVersion.
func VerifyEventSignature(roomVersion, serverName string, keyID KeyID, pub ed25519.PublicKey, pdu []byte) error {
	redacted, err := RedactEvent(roomVersion, pdu)
	if err != nil {
		return err
	}
	return VerifyJSON(serverName, keyID, pub, redacted)
}

// EventID returns a PDU's event ID: its event_id field in room versions 1 and 2, otherwise "$" and
// the reference hash (standard base64 in version 3, URL-safe from version 4).
func EventID(roomVersion string, pdu []byte) (string, error) {
	impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(roomVersion))
	if err != nil {
		return "", fmt.Errorf("room version %q: %w", roomVersion, err)
	}
	if impl.EventIDFormat() == gmsl.EventIDFormatV1 {
		m, err := decodeObject(pdu)
		if err != nil {
			return "", err
		}
		id, ok := m["event_id"].(string)
		if !ok {
			return "", fmt.Errorf("room version %s event has no event_id", roomVersion)
		}
		return id, nil
	}
	redacted, err := impl.RedactEventJSON(pdu)
	if err != nil {
		return "", err
	}
	m, err := decodeObject(redacted)
	if err != nil {
		return "", err
	}
	payload, err := canonicalWithout(m, "signatures", "unsigned")
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(payload)
	if impl.EventIDFormat() == gmsl.EventIDFormatV2 {
		return "$" + base64.RawStdEncoding.EncodeToString(sum[:]), nil
	}
	return "$" + base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// DomainlessRoomIDs reports whether rooms of roomVersion are named by their create event's
// reference hash (version 12 and later): the create event has no room_id and is implied in every
// other event's auth_events rather than listed.
func DomainlessRoomIDs(roomVersion string) bool {
	impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(roomVersion))
	return err == nil && impl.DomainlessRoomIDs()
}

// RoomIDOfCreate is the room ID a version 12 create event with this event ID names.
func RoomIDOfCreate(createEventID string) string { return "!" + strings.TrimPrefix(createEventID, "$") }

// CreateEventIDOf returns the create event ID a version 12 room ID names; ok is false for room
// IDs with a server part (versions 1 to 11), whose create event is listed in auth_events.
func CreateEventIDOf(roomID string) (string, bool) {
	if !strings.HasPrefix(roomID, "!") || len(roomID) < 2 || strings.Contains(roomID, ":") {
		return "", false
	}
	return "$" + roomID[1:], true
}

// EventRoomID is the room a PDU with this event ID belongs to: its room_id, or for a create event
// of a version 12 room (which has none) the room ID its reference hash gives.
func EventRoomID(roomVersion, eventID string, pdu []byte) string {
	if r := gjson.GetBytes(pdu, "room_id"); r.Exists() {
		return r.String()
	}
	if DomainlessRoomIDs(roomVersion) && gjson.GetBytes(pdu, "type").String() == "m.room.create" &&
		gjson.GetBytes(pdu, "state_key").Type == gjson.String && gjson.GetBytes(pdu, "state_key").String() == "" {
		return RoomIDOfCreate(eventID)
	}
	return ""
}

// SignEvent sets a PDU's content hash and adds serverName's signature over its redacted form,
// keeping signatures it already has; it returns the PDU in canonical JSON.
func SignEvent(roomVersion, serverName string, key Key, pdu []byte) ([]byte, error) {
	m, err := decodeObject(pdu)
	if err != nil {
		return nil, err
	}
	hash, err := ContentHash(pdu)
	if err != nil {
		return nil, err
	}
	m["hashes"] = map[string]any{"sha256": hash}
	withHash, err := canonicalValue(m)
	if err != nil {
		return nil, err
	}
	redacted, err := RedactEvent(roomVersion, withHash)
	if err != nil {
		return nil, err
	}
	signedRedacted, err := SignJSON(serverName, key, redacted)
	if err != nil {
		return nil, err
	}
	sm, err := decodeObject(signedRedacted)
	if err != nil {
		return nil, err
	}
	m["signatures"] = sm["signatures"]
	return canonicalValue(m)
}
