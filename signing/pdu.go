package signing

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
	"unsafe"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/tidwall/gjson"
)

// ErrFullCheck means CheckPDU could not confirm the event on its fast path (a room version it does
// not cover, an unusual field, a content hash or signature that does not hold, a key it could not
// get): the caller decides with the full check, which also says why an event fails.
var ErrFullCheck = errors.New("the event needs the full check")

// ErrContentHash means the event's signatures hold but its content does not match its hash:
// Synapse served it redacted, or it changed after signing. CheckPDU still returns its fields.
var ErrContentHash = errors.New("the content does not match its hash")

// PDUInfo is what CheckPDU read from an event: its ID and the fields the cache indexes.
type PDUInfo struct {
	EventID, RoomID, Type, Sender string
	StateKey                      *string
	Depth, OriginServerTS         int64
	PrevEvents, AuthEvents        []string // event IDs (the pairs of versions 1 and 2 reduced to their IDs)
}

// PublicKeyFunc returns the public key keyID of server, or an error when it is not known.
type PublicKeyFunc func(server string, keyID KeyID) (ed25519.PublicKey, error)

// maxPDUBytes and maxPDUIDBytes are gomatrixserverlib's (and Synapse's) size limits of an event
// and of its IDs, type and state key.
const (
	maxPDUBytes   = 65536
	maxPDUIDBytes = 255
)

// pduRules is what CheckPDU needs to know of a room version: the top-level keys and content keys
// its redaction keeps, and how its event IDs are formed.
type pduRules struct {
	top      map[string]bool
	content  map[string][]string // a type mapped to nil keeps all its content
	idFormat gmsl.EventIDFormat
	impl     gmsl.IRoomVersion
}

// Redaction rules as gomatrixserverlib implements them (its redactEventJSONV1 … V5).
var (
	pduTopV1 = map[string]bool{"event_id": true, "type": true, "room_id": true, "sender": true,
		"state_key": true, "content": true, "hashes": true, "signatures": true, "depth": true,
		"prev_events": true, "prev_state": true, "auth_events": true, "origin": true,
		"origin_server_ts": true, "membership": true}
	pduTopV11 = map[string]bool{"event_id": true, "type": true, "room_id": true, "sender": true,
		"state_key": true, "content": true, "hashes": true, "signatures": true, "depth": true,
		"prev_events": true, "auth_events": true, "origin_server_ts": true}
	powerLevelKeys    = []string{"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
	pduContentAliases = map[string][]string{
		"m.room.member": {"membership"}, "m.room.create": {"creator"}, "m.room.join_rules": {"join_rule"},
		"m.room.power_levels": powerLevelKeys, "m.room.aliases": {"aliases"},
		"m.room.history_visibility": {"history_visibility"}}
	pduContentV6 = map[string][]string{
		"m.room.member": {"membership"}, "m.room.create": {"creator"}, "m.room.join_rules": {"join_rule"},
		"m.room.power_levels": powerLevelKeys, "m.room.history_visibility": {"history_visibility"}}
	pduContentV8 = map[string][]string{
		"m.room.member": {"membership"}, "m.room.create": {"creator"}, "m.room.join_rules": {"join_rule", "allow"},
		"m.room.power_levels": powerLevelKeys, "m.room.history_visibility": {"history_visibility"}}
	pduContentV9 = map[string][]string{
		"m.room.member": {"membership", "join_authorised_via_users_server"}, "m.room.create": {"creator"},
		"m.room.join_rules": {"join_rule", "allow"}, "m.room.power_levels": powerLevelKeys,
		"m.room.history_visibility": {"history_visibility"}}
	pduContentV11 = map[string][]string{
		"m.room.member": {"membership", "join_authorised_via_users_server"}, "m.room.create": nil,
		"m.room.join_rules": {"join_rule", "allow"}, "m.room.power_levels": append(append([]string(nil), powerLevelKeys...), "invite"),
		"m.room.history_visibility": {"history_visibility"}, "m.room.redaction": {"redacts"}}
)

// fastRules holds the room versions CheckPDU covers (1 to 11); others take the full check.
var fastRules = sync.OnceValue(func() map[string]*pduRules {
	m := map[string]*pduRules{}
	add := func(top map[string]bool, content map[string][]string, versions ...string) {
		for _, v := range versions {
			impl, err := gmsl.GetRoomVersion(gmsl.RoomVersion(v))
			if err != nil {
				continue
			}
			m[v] = &pduRules{top: top, content: content, idFormat: impl.EventIDFormat(), impl: impl}
		}
	}
	add(pduTopV1, pduContentAliases, "1", "2", "3", "4", "5")
	add(pduTopV1, pduContentV6, "6", "7")
	add(pduTopV1, pduContentV8, "8")
	add(pduTopV1, pduContentV9, "9", "10")
	add(pduTopV11, pduContentV11, "11")
	return m
})

// pduDropped are keys gomatrixserverlib removes from an event before it checks it; CheckPDU leaves
// events carrying them to the full check.
var pduDropped = map[string]bool{"outlier": true, "destinations": true, "age_ts": true, "unsigned": true}

// pduScratch is the per-call working memory of CheckPDU.
type pduScratch struct {
	canon, hashIn, signed bytes.Buffer
	top                   []member
}

var pduScratchPool = sync.Pool{New: func() any { return new(pduScratch) }}

// CheckPDU confirms that pdu (an event of roomVersion without `unsigned`) is intact and returns
// its event ID: its content hash holds, and every server that must sign it (the sender's, the
// event ID's in versions 1 and 2, the invitee's, a restricted join's authorising server) signed
// its redacted form with at least one key keyOf knows and with none that fails. It canonicalises
// the event once and derives the content-hash input, the redacted form (the reference hash and
// the signed bytes) from that one pass. An event whose signatures hold but whose content hash
// does not comes back with ErrContentHash; anything else it does not confirm with an error
// wrapping ErrFullCheck. It never confirms what gomatrixserverlib's checks refuse.
func CheckPDU(roomVersion string, pdu []byte, keyOf PublicKeyFunc) (PDUInfo, error) {
	info, err := checkPDU(roomVersion, pdu, keyOf)
	if err != nil && !errors.Is(err, ErrContentHash) {
		return PDUInfo{}, err
	}
	return info, err
}

func checkPDU(roomVersion string, pdu []byte, keyOf PublicKeyFunc) (PDUInfo, error) {
	var info PDUInfo
	rules := fastRules()[roomVersion]
	if rules == nil {
		return info, fmt.Errorf("%w: room version %q", ErrFullCheck, roomVersion)
	}
	sc := pduScratchPool.Get().(*pduScratch)
	defer pduScratchPool.Put(sc)
	sc.canon.Reset()
	sc.hashIn.Reset()
	sc.signed.Reset()
	sc.top = sc.top[:0]
	if !utf8.Valid(pdu) {
		return info, fmt.Errorf("%w: not UTF-8", ErrFullCheck)
	}
	s := &streamCanon{in: pdu, buf: &sc.canon, strict: true, top: &sc.top}
	s.skipSpace()
	if s.pos == len(pdu) || pdu[s.pos] != '{' {
		return info, fmt.Errorf("%w: not a JSON object", ErrFullCheck)
	}
	if err := s.value(0); err != nil {
		return info, fmt.Errorf("%w: %v", ErrFullCheck, err)
	}
	if s.skipSpace(); s.pos != len(pdu) {
		return info, fmt.Errorf("%w: trailing data", ErrFullCheck)
	}
	if sc.canon.Len() > maxPDUBytes {
		return info, fmt.Errorf("%w: too large", ErrFullCheck)
	}
	canon := sc.canon.Bytes()
	// Each top-level member's value, in canonical form (gjson reads it safely: it is valid JSON).
	var f pduFields
	var content, signatures []byte
	for _, m := range sc.top {
		text := canon[m.start:m.end]
		val := memberValue(text)
		if len(m.key) > 0 && m.key[0] == '_' || pduDropped[m.key] || m.key == "event_id" && rules.idFormat != gmsl.EventIDFormatV1 {
			return info, fmt.Errorf("%w: key %q", ErrFullCheck, m.key)
		}
		if err := f.set(m.key, val, rules.idFormat); err != nil {
			return info, err
		}
		switch m.key {
		case "content":
			content = val
		case "signatures":
			signatures = val
		}
	}
	if err := f.valid(rules.idFormat); err != nil {
		return info, err
	}
	// Content hash: everything but signatures and hashes (unsigned is absent).
	writeMembers(&sc.hashIn, canon, sc.top, func(k string) bool { return k != "signatures" && k != "hashes" }, nil)
	hashOK := false
	if sum := sha256.Sum256(sc.hashIn.Bytes()); bytes.Equal(sum[:], f.hash) {
		hashOK = true
	}
	// The redacted form without signatures: what the servers signed and what the reference hash covers.
	keep, special := rules.content[f.typ]
	redactedContent := func(buf *bytes.Buffer) {
		buf.WriteString(`"content":`)
		if special && keep == nil {
			buf.Write(content)
			return
		}
		buf.WriteByte('{')
		n := 0
		if special {
			gjson.Parse(unsafeString(content)).ForEach(func(k, v gjson.Result) bool {
				for _, want := range keep {
					if k.Str == want {
						if n > 0 {
							buf.WriteByte(',')
						}
						n++
						buf.WriteString(unsafeString(content[k.Index : v.Index+len(v.Raw)]))
						break
					}
				}
				return true
			})
		}
		buf.WriteByte('}')
	}
	writeMembers(&sc.signed, canon, sc.top, func(k string) bool { return rules.top[k] && k != "signatures" },
		map[string]func(*bytes.Buffer){"content": redactedContent})
	signed := sc.signed.Bytes()
	ref := sha256.Sum256(signed)
	id := strings.Clone(f.eventID) // f's strings view the pooled buffer
	switch rules.idFormat {
	case gmsl.EventIDFormatV2:
		id = "$" + base64.RawStdEncoding.EncodeToString(ref[:])
	case gmsl.EventIDFormatV3:
		id = "$" + base64.RawURLEncoding.EncodeToString(ref[:])
	}
	servers, err := f.signers(rules, id, content)
	if err != nil {
		return info, err
	}
	sigs := gjson.Parse(unsafeString(signatures))
	for _, server := range servers {
		if err := verifyServer(server, sigs.Get(gjson.Escape(server)), signed, keyOf); err != nil {
			return info, err
		}
	}
	info = PDUInfo{EventID: id, RoomID: strings.Clone(f.roomID), Type: strings.Clone(f.typ), Sender: strings.Clone(f.sender),
		Depth: f.depth, OriginServerTS: f.ts, PrevEvents: f.prev, AuthEvents: f.auth}
	if f.stateKey != nil {
		sk := strings.Clone(*f.stateKey)
		info.StateKey = &sk
	}
	if !hashOK {
		return info, ErrContentHash
	}
	return info, nil
}

// verifyServer checks server's signatures on signed: every key of it keyOf knows must verify, and
// at least one must.
func verifyServer(server string, byKey gjson.Result, signed []byte, keyOf PublicKeyFunc) error {
	if !byKey.IsObject() {
		return fmt.Errorf("%w: no signature of %s", ErrFullCheck, server)
	}
	verified := 0
	var failed error
	byKey.ForEach(func(k, v gjson.Result) bool {
		pub, err := keyOf(server, KeyID(k.Str))
		if err != nil {
			return true // an unknown key is skipped, as the full check does
		}
		sig, err := DecodeBase64(v.Str)
		if v.Type != gjson.String || err != nil || len(sig) != ed25519.SignatureSize ||
			len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, signed, sig) {
			failed = fmt.Errorf("%w: signature of %s with %s", ErrFullCheck, server, k.Str)
			return false
		}
		verified++
		return true
	})
	if failed != nil {
		return failed
	}
	if verified == 0 {
		return fmt.Errorf("%w: no known key of %s signed it", ErrFullCheck, server)
	}
	return nil
}

// writeMembers writes the object of canon's top-level members whose key keep accepts (in their
// canonical, sorted order), writing a member through replace when it names one.
func writeMembers(buf *bytes.Buffer, canon []byte, top []member, keep func(string) bool, replace map[string]func(*bytes.Buffer)) {
	buf.WriteByte('{')
	n := 0
	for _, m := range top {
		if !keep(m.key) {
			continue
		}
		if n > 0 {
			buf.WriteByte(',')
		}
		n++
		if r := replace[m.key]; r != nil {
			r(buf)
			continue
		}
		buf.Write(canon[m.start:m.end])
	}
	buf.WriteByte('}')
}

// memberValue is the value of a canonical `"key":value` member text.
func memberValue(text []byte) []byte {
	for i := 1; i < len(text); i++ {
		switch text[i] {
		case '\\':
			i++
		case '"':
			return text[i+2:]
		}
	}
	return nil
}

// pduFields are the top-level fields CheckPDU checks the types and sizes of, as
// gomatrixserverlib's event parser and CheckFields do.
type pduFields struct {
	roomID, sender, typ, eventID     string
	stateKey                         *string
	hash                             []byte
	depth, ts                        int64
	prev, auth                       []string // cloned: they outlive the call
	hasPrev, hasAuth, hasTS, hasType bool
	hasContent                       bool
}

// set records one top-level member's canonical value, refusing a type gomatrixserverlib's parser refuses.
func (f *pduFields) set(key string, val []byte, idFormat gmsl.EventIDFormat) error {
	r := gjson.Parse(unsafeString(val))
	bad := func() error { return fmt.Errorf("%w: field %q", ErrFullCheck, key) }
	str := func(dst *string) error {
		if r.Type != gjson.String {
			return bad()
		}
		*dst = r.Str
		return nil
	}
	switch key {
	case "room_id":
		return str(&f.roomID)
	case "sender":
		return str(&f.sender)
	case "type":
		f.hasType = true
		return str(&f.typ)
	case "event_id":
		return str(&f.eventID)
	case "redacts":
		var s string
		return str(&s)
	case "state_key":
		var s string
		if err := str(&s); err != nil {
			return err
		}
		f.stateKey = &s
	case "content":
		if !r.IsObject() {
			return bad()
		}
		f.hasContent = true
	case "depth":
		n, err := strconv.ParseInt(r.Raw, 10, 64)
		if r.Type != gjson.Number || err != nil {
			return bad()
		}
		f.depth = n
	case "origin_server_ts":
		n, err := strconv.ParseInt(r.Raw, 10, 64)
		if r.Type != gjson.Number || err != nil || n < 0 {
			return bad()
		}
		f.ts = n
		f.hasTS = true
	case "prev_events", "auth_events":
		if !r.IsArray() {
			return bad()
		}
		ok := true
		ids := []string{}
		r.ForEach(func(_, e gjson.Result) bool {
			if idFormat == gmsl.EventIDFormatV1 {
				a := e.Array()
				ok = e.IsArray() && len(a) == 2 && a[0].Type == gjson.String && a[1].IsObject()
				if ok {
					h := a[1].Get("sha256")
					_, err := decodeGmslBase64(h.Str)
					ok = h.Type == gjson.String && err == nil
					ids = append(ids, strings.Clone(a[0].Str))
				}
			} else {
				ok = e.Type == gjson.String
				ids = append(ids, strings.Clone(e.Str))
			}
			return ok
		})
		if !ok {
			return bad()
		}
		if key == "prev_events" {
			f.hasPrev, f.prev = true, ids
		} else {
			f.hasAuth, f.auth = true, ids
		}
	case "hashes":
		h := r.Get("sha256")
		if !r.IsObject() || h.Type != gjson.String {
			return bad()
		}
		sum, err := decodeGmslBase64(h.Str)
		if err != nil || len(sum) != sha256.Size {
			return bad()
		}
		f.hash = sum
	case "signatures":
		if !r.IsObject() {
			return bad()
		}
	}
	return nil
}

// valid checks the fields every event must have and their sizes.
func (f *pduFields) valid(idFormat gmsl.EventIDFormat) error {
	switch {
	case !f.hasType || !f.hasContent || !f.hasPrev || !f.hasAuth || !f.hasTS || f.hash == nil:
		return fmt.Errorf("%w: a required field is missing", ErrFullCheck)
	case len(f.typ) > maxPDUIDBytes || f.stateKey != nil && len(*f.stateKey) > maxPDUIDBytes:
		return fmt.Errorf("%w: type or state key too long", ErrFullCheck)
	case !validID(f.roomID, '!') || !validID(f.sender, '@'):
		return fmt.Errorf("%w: room ID or sender", ErrFullCheck)
	case idFormat == gmsl.EventIDFormatV1 && !validID(f.eventID, '$'):
		return fmt.Errorf("%w: event ID", ErrFullCheck)
	}
	return nil
}

// validID reports whether id is a sigil-prefixed ID with a server part, at most 255 bytes long.
func validID(id string, sigil byte) bool {
	if len(id) == 0 || id[0] != sigil || len(id) > maxPDUIDBytes {
		return false
	}
	_, _, err := gmsl.SplitID(sigil, id)
	return err == nil
}

// signers lists the servers that must sign the event, as gomatrixserverlib's
// VerifyEventSignatures decides them for room versions 1 to 11.
func (f *pduFields) signers(rules *pduRules, eventID string, content []byte) ([]string, error) {
	sender, err := spec.NewUserID(f.sender, true)
	if err != nil {
		return nil, fmt.Errorf("%w: sender: %v", ErrFullCheck, err)
	}
	servers := []string{string(sender.Domain())}
	add := func(s string) {
		for _, have := range servers {
			if have == s {
				return
			}
		}
		servers = append(servers, s)
	}
	if rules.idFormat == gmsl.EventIDFormatV1 {
		_, server, err := gmsl.SplitID('$', eventID)
		if err != nil {
			return nil, fmt.Errorf("%w: event ID: %v", ErrFullCheck, err)
		}
		add(string(server))
	}
	if f.typ == spec.MRoomMember {
		m := gjson.Get(unsafeString(content), "membership")
		if m.Type != gjson.String {
			return nil, fmt.Errorf("%w: membership", ErrFullCheck)
		}
		switch m.Str {
		case spec.Invite:
			if f.stateKey == nil {
				return nil, fmt.Errorf("%w: invite without state key", ErrFullCheck)
			}
			_, server, err := gmsl.SplitID('@', *f.stateKey)
			if err != nil {
				return nil, fmt.Errorf("%w: state key: %v", ErrFullCheck, err)
			}
			add(string(server))
		case spec.Join:
			auth, err := rules.impl.RestrictedJoinServername(content)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrFullCheck, err)
			}
			if auth != "" {
				add(string(auth))
			}
		}
	}
	return servers, nil
}

// decodeGmslBase64 decodes unpadded base64, URL-safe when it has '-' or '_', as
// gomatrixserverlib reads hashes (padding makes it fail there, so it fails here).
func decodeGmslBase64(s string) ([]byte, error) {
	if strings.ContainsAny(s, "-_") {
		return base64.RawURLEncoding.DecodeString(s)
	}
	return base64.RawStdEncoding.DecodeString(s)
}

// unsafeString views b as a string without copying; b must not change while the string is used.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
