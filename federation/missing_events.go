package federation

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// maxMissingEvents caps get_missing_events answers.
const maxMissingEvents = 100

type missingEventsRequest struct {
	Limit          *int     `json:"limit"`
	MinDepth       int64    `json:"min_depth"`
	EarliestEvents []string `json:"earliest_events"`
	LatestEvents   []string `json:"latest_events"`
}

// getMissingEvents walks prev_events back from latest_events to earliest_events, oldest first,
// honouring limit and min_depth.
// https://spec.matrix.org/v1.16/server-server-api/#post_matrixfederationv1get_missing_eventsroomid
func (s *Server) getMissingEvents(r *http.Request, vars map[string]string) (any, error) {
	roomID := vars["roomId"]
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, badParam("Cannot read the request body")
	}
	var req missingEventsRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&req); err != nil {
		return nil, matrixspec.New(http.StatusBadRequest, "M_BAD_JSON", "Request body is not a get_missing_events request: "+err.Error())
	}
	if len(req.LatestEvents) == 0 {
		return nil, missingParam("latest_events must name at least one event")
	}
	if len(req.LatestEvents)+len(req.EarliestEvents) > 200 {
		return nil, badParam("Too many events in earliest_events and latest_events")
	}
	for _, id := range append(append([]string{}, req.EarliestEvents...), req.LatestEvents...) {
		if err := checkEventID(id); err != nil {
			return nil, err
		}
	}
	limit := 10
	if req.Limit != nil {
		if *req.Limit < 1 || *req.Limit > maxLimitParam {
			return nil, badParam("limit must be a whole number from 1 to 1000")
		}
		limit = min(*req.Limit, maxMissingEvents)
	}
	pdus, err := s.cfg.Source.MissingEvents(r.Context(), roomID, req.EarliestEvents, req.LatestEvents, limit, req.MinDepth)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"events":`)
	pduList(&buf, pdus)
	buf.WriteByte('}')
	return rawJSON(buf.Bytes()), nil
}
