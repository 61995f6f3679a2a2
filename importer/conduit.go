package importer

import (
	"context"
	"fmt"

	"github.com/transition-matrix/transition-matrix/conduit"
)

// MediaFilesTree is the name under which Changes counts media files written (not a tree).
const MediaFilesTree = "(media files)"

// ConduitTarget opens the Conduit database in dir (its database_path) for the import; mediaPath
// is Conduit's media directory ("" = <dir>/media, Conduit's default). Opened for a dry run, every
// update is rolled back after its changes are counted, and media are not written.
func ConduitTarget(dir, mediaPath, serverName string) func(dryRun bool) (Target, error) {
	return ConduitTargetOn(conduit.Options{ServerName: serverName, MediaPath: mediaPath}, dir)
}

// ConduitTargetOn is ConduitTarget with every option of conduit.Open (the backend among them).
func ConduitTargetOn(opts conduit.Options, dir string) func(dryRun bool) (Target, error) {
	return func(dryRun bool) (Target, error) {
		opts := opts
		opts.DryRun = dryRun
		db, err := conduit.Open(dir, opts)
		if err != nil {
			return nil, err
		}
		return &conduitTarget{db: db, dir: dir, dryRun: dryRun}, nil
	}
}

type conduitTarget struct {
	db     *conduit.DB
	dir    string
	dryRun bool
}

func (c *conduitTarget) Describe() string {
	return fmt.Sprintf("%s (%s backend, database version %d, media %s in %s)", c.db.Path(), c.db.Backend(), c.db.Version(), c.db.MediaLayout(), c.db.MediaPath())
}

func (c *conduitTarget) Close() error { return c.db.Close() }

func (c *conduitTarget) update(ctx context.Context, fn func(*conduit.Tx) error) (Changes, error) {
	var ch conduit.Changes
	var err error
	if c.dryRun {
		ch, err = c.db.DryRunContext(ctx, fn)
	} else {
		ch, err = c.db.UpdateContext(ctx, fn)
	}
	if err != nil {
		return nil, err
	}
	out := Changes{}
	for t, n := range ch.Trees {
		out[t] += n
	}
	if ch.Files > 0 {
		out[MediaFilesTree] += ch.Files
	}
	return out, nil
}

func (c *conduitTarget) WriteKeys(ctx context.Context, k *KeysPlan) (Changes, error) {
	return c.update(ctx, func(tx *conduit.Tx) error {
		if err := tx.SetKeypair(k.Version(), k.Seed); err != nil {
			return err
		}
		doc := conduit.ServerSigningKeys{VerifyKeys: k.VerifyKeys, OldVerifyKeys: map[string]conduit.OldVerifyKey{}, ValidUntilTS: k.ValidUntilTS}
		for id, o := range k.OldVerifyKeys {
			doc.OldVerifyKeys[id] = conduit.OldVerifyKey{Key: o.Key, ExpiredTS: o.ExpiredTS}
		}
		return tx.SetServerSigningKeys(k.ServerName, doc)
	})
}

// WriteUser writes the user, then each device with its keys, session and one-time keys, the
// cross-signing keys, the key backup, account data and pushers, all in one transaction.
func (c *conduitTarget) WriteUser(ctx context.Context, u *UserPlan) (Changes, error) {
	return c.update(ctx, func(tx *conduit.Tx) error {
		if err := tx.PutUser(conduit.User{ID: u.UserID, PasswordHash: u.PasswordHash, DisplayName: u.DisplayName, AvatarURL: u.AvatarURL}); err != nil {
			return err
		}
		for _, d := range u.Devices {
			dev := conduit.Device{ID: d.ID}
			if d.DisplayName != nil {
				dev.DisplayName = *d.DisplayName
			}
			if d.LastSeenIP != nil {
				dev.LastSeenIP = *d.LastSeenIP
			}
			if d.LastSeenTS != nil {
				dev.LastSeenTS = *d.LastSeenTS
			}
			if err := tx.PutDevice(u.UserID, dev); err != nil {
				return err
			}
			if d.Keys != nil {
				if err := tx.PutDeviceKeys(u.UserID, d.ID, d.Keys); err != nil {
					return err
				}
			}
			if d.AccessToken != "" {
				if err := tx.PutAccessToken(u.UserID, d.ID, d.AccessToken); err != nil {
					return err
				}
			}
			for _, id := range sortedKeys(d.OneTimeKeys) {
				if err := tx.PutOneTimeKey(u.UserID, d.ID, id, d.OneTimeKeys[id]); err != nil {
					return err
				}
			}
		}
		for _, k := range []struct {
			usage string
			raw   []byte
		}{{"master", u.MasterKey}, {"self_signing", u.SelfSigningKey}, {"user_signing", u.UserSigningKey}} {
			if k.raw != nil {
				if err := tx.PutCrossSigningKey(u.UserID, k.usage, k.raw); err != nil {
					return err
				}
			}
		}
		if b := u.Backup; b != nil {
			if err := tx.PutBackupVersion(u.UserID, b.Version, b.Algorithm); err != nil {
				return err
			}
			for _, s := range b.Sessions {
				if err := tx.PutBackupSession(u.UserID, b.Version, s.RoomID, s.SessionID, s.Data); err != nil {
					return err
				}
			}
		}
		for _, a := range u.AccountData {
			if err := tx.PutAccountData(a.RoomID, u.UserID, a.Type, a.Content); err != nil {
				return err
			}
		}
		for _, p := range u.Pushers {
			if err := tx.PutPusher(u.UserID, p.JSON); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteMedia writes the file and its metadata under the same media ID; a dry run only checks
// that the file can be opened.
func (c *conduitTarget) WriteMedia(ctx context.Context, m *MediaPlan) (Changes, error) {
	r, err := m.Open()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if c.dryRun {
		return Changes{}, nil
	}
	return c.update(ctx, func(tx *conduit.Tx) error {
		return tx.PutMedia(conduit.Media{Server: c.db.ServerName(), MediaID: m.MediaID, Uploader: m.UserID, ContentType: m.ContentType,
			Filename: m.UploadName, CreatedTS: m.CreatedTS, UnauthenticatedAccess: !m.Authenticated, SHA256: m.SHA256}, r)
	})
}

func (c *conduitTarget) RaiseCounters(ctx context.Context, min uint64) (Changes, error) {
	return c.update(ctx, func(tx *conduit.Tx) error {
		tx.RaiseCounter(min)
		return nil
	})
}
