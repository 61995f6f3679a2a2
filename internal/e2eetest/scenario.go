package e2eetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

var (
	// ErrResume means a device could not sync again with its old access token and crypto store.
	ErrResume = errors.New("e2eetest: the device did not resume with its old token and crypto store")
	// ErrNotVerified means bob no longer sees alice (her identity or her device) as verified.
	ErrNotVerified = errors.New("e2eetest: bob does not see alice's device as verified")
	// ErrNotDecrypted means a message sent after the cutover did not arrive decrypted.
	ErrNotDecrypted = errors.New("e2eetest: a message after the cutover did not arrive decrypted")
	// ErrRestore means alice's new device could not restore the key backup with the recovery key.
	ErrRestore = errors.New("e2eetest: the new device could not restore the key backup")
	// ErrHistory means the new device could not read a message sent before the cutover.
	ErrHistory = errors.New("e2eetest: a message from before the cutover is missing or undecryptable")
)

// Account is a user that exists on the homeserver, with its password.
type Account struct {
	UserID   string
	Password string
}

// Session is a logged-in device.
type Session struct {
	UserID      string `json:"user_id"`
	DeviceID    string `json:"device_id"`
	AccessToken string `json:"access_token"`
}

// Message is an event the scenario sent.
type Message struct {
	EventID string
	Sender  string
	Body    string
}

// Scenario is alice and bob, each with one device whose process (and crypto store) lives for the
// whole test, across the cutover.
type Scenario struct {
	Alice, Bob     Session
	AlicePassword  string
	RoomID         string
	RecoveryKey    string
	BackupVersion  string
	BeforeCutover  []Message
	AfterCutover   []Message
	alice, bob     *Device
	t              testing.TB
	verifiedOnce   bool
	backupSessions int
}

// Alice's and bob's device IDs, so a test can name the device it leaves out.
const (
	AliceDeviceID    = "ALICEPHONE"
	BobDeviceID      = "BOBLAPTOP"
	AliceNewDeviceID = "ALICENEWPHONE"
)

type bootstrapResult struct {
	CrossSigningReady bool    `json:"cross_signing_ready"`
	BackupVersion     *string `json:"backup_version"`
	RecoveryKey       *string `json:"recovery_key"`
}

type sasResult struct {
	Decimals []int    `json:"decimals"`
	Emoji    []string `json:"emoji"`
}

type statusResult struct {
	UserCrossSigningVerified bool     `json:"user_cross_signing_verified"`
	UserWasVerified          bool     `json:"user_was_verified"`
	Devices                  []string `json:"devices"`
	Device                   *struct {
		CrossSigningVerified bool `json:"cross_signing_verified"`
		SignedByOwner        bool `json:"signed_by_owner"`
		Verified             bool `json:"verified"`
	} `json:"device"`
}

type messageResult struct {
	EventID           string `json:"event_id"`
	Sender            string `json:"sender"`
	Encrypted         bool   `json:"encrypted"`
	DecryptionFailure bool   `json:"decryption_failure"`
}

type historyEvent struct {
	EventID   string  `json:"event_id"`
	Type      string  `json:"type"`
	Sender    string  `json:"sender"`
	Body      *string `json:"body"`
	Encrypted bool    `json:"encrypted"`
	Error     *string `json:"error"`
}

// Before runs everything on the old server at baseURL: both devices log in with their passwords;
// alice bootstraps cross-signing, secret storage and key backup (recovery key); bob bootstraps
// cross-signing; alice makes an encrypted room with bob; they verify each other by SAS in the
// room (the test compares both sides' numbers before confirming) and exchange encrypted messages;
// it returns once alice's backup holds both megolm sessions. roomVersion "" takes the server's
// default (12 on Synapse 1.163). Failures end the test.
func Before(ctx context.Context, t testing.TB, baseURL string, alice, bob Account, roomVersion string) *Scenario {
	t.Helper()
	s := &Scenario{t: t, AlicePassword: alice.Password}
	s.alice = StartDevice(t, "alice")
	s.bob = StartDevice(t, "bob")
	run2(t, func() error {
		return s.alice.Call(ctx, "login", map[string]any{"base_url": baseURL, "user_id": alice.UserID, "password": alice.Password, "device_id": AliceDeviceID}, &s.Alice)
	}, func() error {
		return s.bob.Call(ctx, "login", map[string]any{"base_url": baseURL, "user_id": bob.UserID, "password": bob.Password, "device_id": BobDeviceID}, &s.Bob)
	})

	var ab, bb bootstrapResult
	run2(t, func() error {
		return s.alice.Call(ctx, "bootstrap", map[string]any{"backup": true}, &ab)
	}, func() error {
		return s.bob.Call(ctx, "bootstrap", map[string]any{"backup": false}, &bb)
	})
	if !ab.CrossSigningReady || !bb.CrossSigningReady || ab.RecoveryKey == nil || ab.BackupVersion == nil {
		t.Fatalf("e2eetest: bootstrap: alice %+v, bob %+v: want cross-signing ready on both, and alice's backup and recovery key", ab, bb)
	}
	s.RecoveryKey, s.BackupVersion = *ab.RecoveryKey, *ab.BackupVersion

	var room struct {
		RoomID string `json:"room_id"`
	}
	s.alice.MustCall(ctx, "create_room", map[string]any{"name": "e2ee across the cutover", "invite": []string{s.Bob.UserID}, "room_version": roomVersion}, &room)
	s.RoomID = room.RoomID
	s.bob.MustCall(ctx, "join", map[string]any{"room_id": s.RoomID}, nil)
	s.alice.MustCall(ctx, "wait_joined", map[string]any{"room_id": s.RoomID, "user_id": s.Bob.UserID}, nil)

	s.verify(ctx)

	if err := s.exchange(ctx, &s.BeforeCutover, "before"); err != nil {
		t.Fatal(err)
	}
	s.waitBackup(ctx)
	return s
}

// verify runs SAS verification between alice and bob in the room, comparing the numbers both
// sides show before either confirms, then checks that each sees the other as verified.
func (s *Scenario) verify(ctx context.Context) {
	t := s.t
	run2(t, func() error {
		return s.alice.Call(ctx, "wait_device", map[string]any{"user_id": s.Bob.UserID, "device_id": s.Bob.DeviceID}, nil)
	}, func() error {
		return s.bob.Call(ctx, "wait_device", map[string]any{"user_id": s.Alice.UserID, "device_id": s.Alice.DeviceID}, nil)
	})
	var as, bs sasResult
	run2(t, func() error {
		return s.alice.Call(ctx, "verify_request", map[string]any{"user_id": s.Bob.UserID, "room_id": s.RoomID}, &as)
	}, func() error {
		return s.bob.Call(ctx, "verify_accept", nil, &bs)
	})
	if len(as.Decimals) != 3 || !slices.Equal(as.Decimals, bs.Decimals) || !slices.Equal(as.Emoji, bs.Emoji) {
		t.Fatalf("e2eetest: SAS differs: alice shows %v %v, bob %v %v", as.Decimals, as.Emoji, bs.Decimals, bs.Emoji)
	}
	run2(t, func() error { return s.alice.Call(ctx, "verify_confirm", nil, nil) },
		func() error { return s.bob.Call(ctx, "verify_confirm", nil, nil) })
	if err := s.checkVerified(ctx, s.bob, s.Alice, false); err != nil {
		t.Fatal(err)
	}
	if err := s.checkVerified(ctx, s.alice, s.Bob, false); err != nil {
		t.Fatal(err)
	}
	s.verifiedOnce = true
}

// checkVerified asks viewer how it sees other's identity and device, until both are verified by
// cross-signing or 30 s pass (the signature upload after a SAS takes a moment); refresh downloads
// the keys from the server first.
func (s *Scenario) checkVerified(ctx context.Context, viewer *Device, other Session, refresh bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st statusResult
		if err := viewer.Call(ctx, "status", map[string]any{"user_id": other.UserID, "device_id": other.DeviceID, "refresh": refresh}, &st); err != nil {
			return fmt.Errorf("%w: %v", ErrNotVerified, err)
		}
		refresh = false
		var bad error
		if !slices.Contains(st.Devices, other.DeviceID) {
			bad = fmt.Errorf("%w: %s sees %s's devices %v, without %s", ErrNotVerified, viewer.Name, other.UserID, st.Devices, other.DeviceID)
		} else if !st.UserCrossSigningVerified || st.Device == nil || !st.Device.CrossSigningVerified {
			bad = fmt.Errorf("%w: %s sees %s cross-signing verified=%v, device %s %+v", ErrNotVerified, viewer.Name, other.UserID, st.UserCrossSigningVerified, other.DeviceID, st.Device)
		}
		if bad == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return bad
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", bad, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// exchange sends one message each way and waits for each to arrive decrypted.
func (s *Scenario) exchange(ctx context.Context, into *[]Message, phase string) error {
	pairs := []struct {
		from, to *Device
		sender   string
	}{{s.alice, s.bob, s.Alice.UserID}, {s.bob, s.alice, s.Bob.UserID}, {s.alice, s.bob, s.Alice.UserID}}
	for i, p := range pairs {
		body := fmt.Sprintf("%s the cutover, message %d from %s", phase, i+1, p.from.Name)
		var sent struct {
			EventID string `json:"event_id"`
		}
		if err := p.from.Call(ctx, "send", map[string]any{"room_id": s.RoomID, "body": body}, &sent); err != nil {
			return fmt.Errorf("%w: %v", ErrNotDecrypted, err)
		}
		var got messageResult
		if err := p.to.Call(ctx, "wait_message", map[string]any{"room_id": s.RoomID, "body": body}, &got); err != nil {
			return fmt.Errorf("%w: %v", ErrNotDecrypted, err)
		}
		if !got.Encrypted || got.DecryptionFailure || got.EventID != sent.EventID || got.Sender != p.sender {
			return fmt.Errorf("%w: %q: sent %s, %s got %+v", ErrNotDecrypted, body, sent.EventID, p.to.Name, got)
		}
		*into = append(*into, Message{EventID: sent.EventID, Sender: p.sender, Body: body})
	}
	return nil
}

// waitBackup waits (bounded) until alice's key backup on the server holds both megolm sessions
// of the room: hers and bob's.
func (s *Scenario) waitBackup(ctx context.Context) {
	deadline := time.Now().Add(60 * time.Second)
	for {
		var c struct {
			Version  *string `json:"version"`
			Sessions int     `json:"sessions"`
		}
		s.alice.MustCall(ctx, "backup_count", map[string]any{"room_id": s.RoomID}, &c)
		if c.Sessions >= 2 {
			s.backupSessions = c.Sessions
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("e2eetest: alice's key backup holds %d sessions of %s after 60 s, want 2 (hers and bob's)", c.Sessions, s.RoomID)
		}
		select {
		case <-ctx.Done():
			s.t.Fatal(ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Pause stops both clients before the old server goes away; their processes and crypto stores stay.
func (s *Scenario) Pause(ctx context.Context) {
	s.t.Helper()
	s.alice.MustCall(ctx, "stop", nil, nil)
	s.bob.MustCall(ctx, "stop", nil, nil)
}

// After runs the scenario on the new server at baseURL and returns the first failure: the same
// two devices sync with their old tokens and crypto stores; bob, after downloading alice's keys
// from the new server, still sees her and her device as verified; they exchange new messages
// both ways; then a new device of alice logs in with her password, restores the key backup with
// the recovery key and decrypts every message sent before the cutover.
func (s *Scenario) After(ctx context.Context, baseURL string) error {
	for _, d := range []struct {
		dev  *Device
		sess Session
		pw   string
	}{{s.alice, s.Alice, s.AlicePassword}, {s.bob, s.Bob, ""}} {
		var who Session
		if err := d.dev.Call(ctx, "resume", map[string]any{"base_url": baseURL, "user_id": d.sess.UserID, "device_id": d.sess.DeviceID, "access_token": d.sess.AccessToken, "password": d.pw, "rooms": []string{s.RoomID}}, &who); err != nil {
			return fmt.Errorf("%w: %v", ErrResume, err)
		}
		if who.DeviceID != d.sess.DeviceID {
			return fmt.Errorf("%w: %s's token is now device %q, want %q", ErrResume, d.sess.UserID, who.DeviceID, d.sess.DeviceID)
		}
	}
	if err := s.checkVerified(ctx, s.bob, s.Alice, true); err != nil {
		return err
	}
	if err := s.exchange(ctx, &s.AfterCutover, "after"); err != nil {
		return err
	}
	return s.NewDeviceReadsHistory(ctx, baseURL)
}

// NewDeviceReadsHistory logs a new device of alice in with her password, restores the key backup
// with the recovery key, and checks that every message sent before the cutover decrypts.
func (s *Scenario) NewDeviceReadsHistory(ctx context.Context, baseURL string) error {
	d := StartDevice(s.t, "alice-new")
	var sess Session
	if err := d.Call(ctx, "login", map[string]any{"base_url": baseURL, "user_id": s.Alice.UserID, "password": s.AlicePassword, "device_id": AliceNewDeviceID}, &sess); err != nil {
		return fmt.Errorf("%w: login: %v", ErrRestore, err)
	}
	var r struct {
		BackupVersion *string `json:"backup_version"`
		Total         int     `json:"total"`
		Imported      int     `json:"imported"`
	}
	if err := d.Call(ctx, "restore", map[string]any{"recovery_key": s.RecoveryKey}, &r); err != nil {
		return fmt.Errorf("%w: %v", ErrRestore, err)
	}
	if r.BackupVersion == nil || *r.BackupVersion != s.BackupVersion || r.Imported < s.backupSessions {
		return fmt.Errorf("%w: restored %+v, want version %s and %d sessions", ErrRestore, r, s.BackupVersion, s.backupSessions)
	}
	var h struct {
		Events []historyEvent `json:"events"`
	}
	if err := d.Call(ctx, "history", map[string]any{"room_id": s.RoomID}, &h); err != nil {
		return fmt.Errorf("%w: %v", ErrHistory, err)
	}
	if len(h.Events) == 0 || h.Events[0].Type != "m.room.create" {
		return fmt.Errorf("%w: history of %s has %d events and does not start at m.room.create", ErrHistory, s.RoomID, len(h.Events))
	}
	byID := map[string]historyEvent{}
	for _, e := range h.Events {
		byID[e.EventID] = e
	}
	for _, m := range s.BeforeCutover {
		e, ok := byID[m.EventID]
		switch {
		case !ok:
			return fmt.Errorf("%w: %s (%q) is not in the room's history on the new server", ErrHistory, m.EventID, m.Body)
		case e.Error != nil:
			return fmt.Errorf("%w: %s (%q): %s", ErrHistory, m.EventID, m.Body, *e.Error)
		case !e.Encrypted || e.Body == nil || *e.Body != m.Body || e.Sender != m.Sender:
			return fmt.Errorf("%w: %s decrypted to %+v, want %q from %s", ErrHistory, m.EventID, e, m.Body, m.Sender)
		}
	}
	return nil
}

// run2 runs a and b at once and ends the test with their errors.
func run2(t testing.TB, a, b func() error) {
	t.Helper()
	ch := make(chan error, 1)
	go func() { ch <- b() }()
	ea := a()
	eb := <-ch
	if err := errors.Join(ea, eb); err != nil {
		t.Fatal(err)
	}
}
