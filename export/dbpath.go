package export

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// ErrLoginAsRefused: Synapse refuses login-as and no Synapse database was given to read from instead.
var ErrLoginAsRefused = errors.New("Synapse refuses login-as") //nolint:staticcheck // names the program

// chooseClientPath decides, once, how per-user client data is read: login-as when Synapse offers
// it (and Config.NoLoginAs is false), else Synapse's database.
func (e *exporter) chooseClientPath(ctx context.Context) error {
	db := e.cfg.SynapseDB
	if db != nil {
		if err := db.CheckClientSchema(ctx); err != nil {
			return err
		}
	}
	if !e.cfg.NoLoginAs {
		la, err := e.cli.Admin().ProbeLoginAs(ctx)
		if err != nil {
			return fmt.Errorf("probing login-as: %w", err)
		}
		if la.Available {
			return nil
		}
		if db == nil {
			return fmt.Errorf("%w (%s): a Synapse that hands its logins to the Matrix Authentication Service does so; rerun with -synapse-db DSN (Synapse's database, read-only) to read E2EE keys, key backups, push rules and tags from there",
				ErrLoginAsRefused, la.Refusal.Error())
		}
		e.log.Warn("Synapse refuses login-as; reading per-user client data from its database: " + la.Refusal.Error())
	} else if db == nil {
		return errors.New("no login-as was asked for, but no Synapse database was given (-synapse-db)")
	}
	e.dbOnly = true
	_, err := e.pushRules(ctx)
	return err
}

// pushRules returns the base push rules, derived once from the admin's own account.
func (e *exporter) pushRules(ctx context.Context) (*pushTemplate, error) {
	e.pushMu.Lock()
	defer e.pushMu.Unlock()
	if e.push != nil {
		return e.push, nil
	}
	view, err := e.cli.AdminAsUser().PushRules(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the admin's push rules (the base rules every user starts from): %w", err)
	}
	own, err := e.cfg.SynapseDB.UserPushRules(ctx, e.adminID)
	if err != nil {
		return nil, err
	}
	t, err := newPushTemplate(e.adminID, view, own)
	if err != nil {
		return nil, err
	}
	e.push = t
	return t, nil
}

// dbParts fills what only the client API gives from Synapse's database: the profile comes from the
// client API with the admin's token (any user may read a profile).
func (e *exporter) dbParts(ctx context.Context, u *exportfmt.UserFile) error {
	db := e.cfg.SynapseDB
	if err := readProfile(ctx, e.cli.AdminAsUser(), u); err != nil {
		return err
	}
	tmpl, err := e.pushRules(ctx)
	if err != nil {
		return err
	}
	rules, err := db.UserPushRules(ctx, u.UID)
	if err != nil {
		return err
	}
	pr, err := tmpl.render(u.UID, rules)
	if err != nil {
		return err
	}
	u.AccountData.Global["m.push_rules"] = pr
	tags, err := db.UserRoomTags(ctx, u.UID)
	if err != nil {
		return err
	}
	for _, room := range sortedKeys(tags) {
		content, err := json.Marshal(map[string]any{"tags": tags[room]})
		if err != nil {
			return err
		}
		setRoomData(u, room, "m.tag", content)
	}
	keys, err := db.UserKeys(ctx, u.UID)
	if err != nil {
		return err
	}
	u.E2E.DeviceKeys = keys.DeviceKeys
	u.E2E.MasterKey, u.E2E.SelfSigningKey, u.E2E.UserSigningKey = keys.MasterKey, keys.SelfSigningKey, keys.UserSigningKey
	kb, err := db.UserKeyBackup(ctx, u.UID)
	if err != nil {
		return err
	}
	if kb != nil {
		u.E2E.KeyBackup = &exportfmt.KeyBackup{Version: kb.Version, Algorithm: kb.Algorithm, AuthData: kb.AuthData, ETag: kb.ETag, Count: kb.Count, Rooms: kb.Rooms}
	}
	return nil
}

// loginAsRefused reports whether err is Synapse (or a proxy) refusing login-as itself.
func loginAsRefused(err error) bool {
	var he *synapseclient.Error
	return errors.As(err, &he) && (he.Status == 403 || errors.Is(he, synapseclient.ErrUnrecognized))
}

// userLocked reports whether err is Synapse's refusal of a locked account: 401 M_USER_LOCKED, or
// ORG_MATRIX_MSC3939_USER_LOCKED before Synapse adopted the stable code (1.120 still sends it).
func userLocked(err error) bool {
	var he *synapseclient.Error
	return errors.As(err, &he) && (he.ErrCode == "M_USER_LOCKED" || he.ErrCode == "ORG_MATRIX_MSC3939_USER_LOCKED")
}
