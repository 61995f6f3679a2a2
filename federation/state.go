package federation

import (
	"bytes"
	"net/http"
)

// stateParams reads the room ID and the required event_id query parameter.
func stateParams(r *http.Request, vars map[string]string) (roomID, eventID string, err error) {
	roomID = vars["roomId"]
	if err := checkRoomID(roomID); err != nil {
		return "", "", err
	}
	eventID = r.URL.Query().Get("event_id")
	if eventID == "" {
		return "", "", missingParam("Missing event_id parameter")
	}
	if err := checkEventID(eventID); err != nil {
		return "", "", err
	}
	return roomID, eventID, nil
}

// stateIDs answers the IDs of the room state before an event and of its auth chain.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1state_idsroomid
func (s *Server) stateIDs(r *http.Request, vars map[string]string) (any, error) {
	roomID, eventID, err := stateParams(r, vars)
	if err != nil {
		return nil, err
	}
	state, auth, err := s.cfg.Source.StateIDs(r.Context(), roomID, eventID)
	if err != nil {
		return nil, err
	}
	return map[string][]string{"pdu_ids": nonNil(state), "auth_chain_ids": nonNil(auth)}, nil
}

// state answers the room state before an event and its auth chain, as full PDUs.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1stateroomid
func (s *Server) state(r *http.Request, vars map[string]string) (any, error) {
	roomID, eventID, err := stateParams(r, vars)
	if err != nil {
		return nil, err
	}
	state, auth, err := s.cfg.Source.State(r.Context(), roomID, eventID)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"pdus":`)
	pduList(&buf, state)
	buf.WriteString(`,"auth_chain":`)
	pduList(&buf, auth)
	buf.WriteByte('}')
	return rawJSON(buf.Bytes()), nil
}

// eventAuth answers the whole auth chain of an event.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1event_authroomideventid
func (s *Server) eventAuth(r *http.Request, vars map[string]string) (any, error) {
	roomID, eventID := vars["roomId"], vars["eventId"]
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	if err := checkEventID(eventID); err != nil {
		return nil, err
	}
	auth, err := s.cfg.Source.EventAuth(r.Context(), roomID, eventID)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	buf.WriteString(`{"auth_chain":`)
	pduList(&buf, auth)
	buf.WriteByte('}')
	return rawJSON(buf.Bytes()), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
