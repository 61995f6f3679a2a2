package synapsetest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL driver "pgx"
	_ "modernc.org/sqlite"             // SQLite driver "sqlite"
)

// EventIDs reads the IDs of every event Synapse holds for a room (outliers excepted) straight from
// its database, independently of the tool's own readers.
func (s *Server) EventIDs(ctx context.Context, roomID string) (map[string]string, error) {
	db, err := s.openDB()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	q := "SELECT event_id, type FROM events WHERE room_id = $1 AND NOT outlier"
	rows, err := db.QueryContext(ctx, q, roomID)
	if err != nil {
		return nil, fmt.Errorf("synapsetest: reading the events of %s: %w", roomID, err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var id, typ string
		if err := rows.Scan(&id, &typ); err != nil {
			return nil, err
		}
		out[id] = typ
	}
	return out, rows.Err()
}

func (s *Server) openDB() (*sql.DB, error) {
	if s.DatabaseDSN != "" {
		return sql.Open("pgx", s.DatabaseDSN)
	}
	u := url.URL{Scheme: "file", Path: s.DatabasePath, RawQuery: "mode=ro&_pragma=busy_timeout(10000)"}
	return sql.Open("sqlite", u.String())
}
