package federation

import (
	"net/http"
	"strconv"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// maxLimitParam is the largest limit accepted at all; larger ones are refused, not capped.
const maxLimitParam = 1000

// backfill answers the events reachable backwards from the v events, v included, newest first,
// at most min(limit, 100).
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1backfillroomid
func (s *Server) backfill(r *http.Request, vars map[string]string) (any, error) {
	roomID := vars["roomId"]
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	q := r.URL.Query()
	seeds := q["v"]
	if len(seeds) == 0 {
		return nil, missingParam("Missing v parameter")
	}
	if len(seeds) > 20 {
		return nil, badParam("Too many v parameters")
	}
	for _, id := range seeds {
		if err := checkEventID(id); err != nil {
			return nil, err
		}
	}
	limit, err := limitParam(q.Get("limit"), true)
	if err != nil {
		return nil, err
	}
	pdus, err := s.cfg.Source.Backfill(r.Context(), roomID, seeds, min(limit, matrixspec.MaxBackfill))
	if err != nil {
		return nil, err
	}
	return s.transaction(pdus), nil
}

// limitParam parses a limit: a whole number from 1 to 1000.
func limitParam(v string, required bool) (int, error) {
	if v == "" {
		if required {
			return 0, missingParam("Missing limit parameter")
		}
		return 10, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxLimitParam {
		return 0, badParam("limit must be a whole number from 1 to 1000")
	}
	return n, nil
}
