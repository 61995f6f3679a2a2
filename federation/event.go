package federation

import "net/http"

// event answers one event by ID.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1eventeventid
func (s *Server) event(r *http.Request, vars map[string]string) (any, error) {
	id := vars["eventId"]
	if err := checkEventID(id); err != nil {
		return nil, err
	}
	pdu, err := s.cfg.Source.Event(r.Context(), id)
	if err != nil {
		return nil, err
	}
	return s.transaction([]PDU{pdu}), nil
}
