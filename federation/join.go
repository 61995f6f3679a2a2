package federation

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// JoinSource builds join templates and accepts joins; an EventSource that also implements it
// gets the make_join and send_join endpoints (others answer them 404 M_UNRECOGNIZED).
type JoinSource interface {
	// MakeJoin returns the room's version and a join event template for userID (a user of the
	// server itself), built on the room's current state; versions are the requester's.
	MakeJoin(ctx context.Context, roomID, userID string, versions []string) (roomVersion string, template json.RawMessage, err error)
	// SendJoin verifies a signed join and returns the room state before it and the auth chain
	// of that state, as stored; the join is remembered, never sent to Synapse.
	SendJoin(ctx context.Context, roomID, eventID string, pdu []byte) (state, authChain []PDU, err error)
}

// makeJoin answers a join event template for a user of the server itself.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1make_joinroomiduserid
func (s *Server) makeJoin(r *http.Request, vars map[string]string) (any, error) {
	js, ok := s.cfg.Source.(JoinSource)
	if !ok {
		return nil, matrixspec.New(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
	}
	roomID, userID := vars["roomId"], vars["userId"]
	if err := checkRoomID(roomID); err != nil {
		return nil, err
	}
	if err := s.checkOwnUser(userID); err != nil {
		return nil, err
	}
	versions := r.URL.Query()["ver"]
	if len(versions) == 0 {
		versions = []string{"1"} // as Synapse: no ver means a server that knows only version 1
	}
	version, template, err := js.MakeJoin(r.Context(), roomID, userID, versions)
	if err != nil {
		return nil, err
	}
	return map[string]any{"room_version": version, "event": template}, nil
}

// checkOwnUser refuses user IDs that are malformed or of another server: the only origin the
// shim answers is the server itself.
func (s *Server) checkOwnUser(userID string) error {
	if len(userID) < 3 || !validID(userID, '@') {
		return badParam("Invalid user ID: want '@', a localpart, ':' and the server name, in UTF-8 without spaces or control characters")
	}
	_, server, ok := strings.Cut(userID, ":")
	if !ok || server == "" {
		return badParam("Invalid user ID")
	}
	if server != s.cfg.Identity.ServerName {
		return matrixspec.Forbidden("User not from origin")
	}
	return nil
}

// sendJoin accepts a join signed by the server itself and answers the state before it and its
// auth chain; v1 wraps the answer as [200, {...}].
// https://spec.matrix.org/v1.16/server-server-api/#put_matrixfederationv2send_joinroomideventid
func (s *Server) sendJoin(v1 bool) handlerFunc {
	return func(r *http.Request, vars map[string]string) (any, error) {
		js, ok := s.cfg.Source.(JoinSource)
		if !ok {
			return nil, matrixspec.New(http.StatusNotFound, "M_UNRECOGNIZED", "Unrecognized request")
		}
		roomID, eventID := vars["roomId"], vars["eventId"]
		if err := checkRoomID(roomID); err != nil {
			return nil, err
		}
		if err := checkEventID(eventID); err != nil {
			return nil, err
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, badParam("Cannot read the request body")
		}
		if !json.Valid(body) || !bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n"), []byte("{")) {
			return nil, matrixspec.New(http.StatusBadRequest, "M_NOT_JSON", "The request body is not a JSON object")
		}
		state, chain, err := js.SendJoin(r.Context(), roomID, eventID, body)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		if v1 {
			buf.WriteString(`[200,`)
		}
		// No "event": Conduit would copy the signatures of the answering server (its own name)
		// from it over its own; no members_omitted: the state is whole.
		buf.WriteString(`{"state":`)
		pduList(&buf, state)
		buf.WriteString(`,"auth_chain":`)
		pduList(&buf, chain)
		buf.WriteString(`}`)
		if v1 {
			buf.WriteString(`]`)
		}
		return rawJSON(buf.Bytes()), nil
	}
}
