package conduit

import (
	"context"
	"errors"
)

// errDryRun rolls back a dry run's transaction.
var errDryRun = errors.New("dry run")

// DryRunContext runs fn like UpdateContext, counts what it would change, and rolls everything
// back (rows and the media files it created): the database is left as it was.
func (db *DB) DryRunContext(ctx context.Context, fn func(tx *Tx) error) (Changes, error) {
	var ch Changes
	_, err := db.update(ctx, func(tx *Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if err := tx.finish(); err != nil {
			return err
		}
		ch = tx.changes
		return errDryRun
	})
	if errors.Is(err, errDryRun) {
		return ch, nil
	}
	return Changes{}, err
}
