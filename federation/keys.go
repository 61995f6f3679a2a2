package federation

import (
	"net/http"

	"github.com/transition-matrix/transition-matrix/signing"
)

// serverKeys publishes the old server's keys, signed by every current key, so Conduit can check
// events signed with any of them.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2server
func (s *Server) serverKeys(*http.Request, map[string]string) (any, error) {
	doc, err := s.cfg.Identity.KeyDocument(s.cfg.Now().Add(signing.DefaultKeyValidity))
	if err != nil {
		return nil, err
	}
	return rawJSON(doc), nil
}

// version names the shim.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixfederationv1version
func (s *Server) version(*http.Request, map[string]string) (any, error) {
	return map[string]any{"server": map[string]string{"name": "transition-matrix shim", "version": s.cfg.Version}}, nil
}
