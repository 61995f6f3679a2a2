package synapsesim

import (
	"bytes"
	"net/http"

	"github.com/transition-matrix/transition-matrix/signing"
)

// keyQuery serves GET /_matrix/key/v2/query/{serverName}: Synapse as a notary answers the keys it
// holds for a server, each document signed by that server and countersigned by Synapse.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2queryservername
func (s *Server) keyQuery(w http.ResponseWriter, r *http.Request, v []string) {
	var id *signing.Identity
	switch w0 := s.w; v[0] {
	case w0.ServerName:
		id = s.identity
	case w0.RemoteServerName:
		k := w0.RemoteKey
		id = &signing.Identity{ServerName: k.ServerName, Keys: []signing.Key{{ID: signing.KeyID(k.KeyID), Seed: k.Private.Seed()}}}
	}
	var buf bytes.Buffer
	buf.WriteString(`{"server_keys":[`)
	if id != nil {
		doc, err := id.KeyDocument(s.now().Add(signing.DefaultKeyValidity))
		if err == nil && id != s.identity {
			doc, err = signing.SignJSON(s.identity.ServerName, s.identity.SigningKey(), doc)
		}
		if err != nil {
			writeError(w, http.StatusInternalServerError, "M_UNKNOWN", err.Error())
			return
		}
		buf.Write(doc)
	}
	buf.WriteString(`]}`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}
