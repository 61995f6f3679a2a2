//go:build conduit

package realconduit

import (
	"context"
	"strings"
)

// ConduitVersion is the server version Conduit's federation API reports.
func ConduitVersion(ctx context.Context, baseURL string) (string, error) {
	var v struct {
		Server struct {
			Name    string `json:"name"`
			Version string `json:"version"`
		} `json:"server"`
	}
	if err := NewClient(baseURL).Do(ctx, "GET", "/_matrix/federation/v1/version", "", nil, &v); err != nil {
		return "", err
	}
	return v.Server.Version, nil
}

// versionDir names a recording directory after a Conduit version ("0.10.12", "0.11.0-alpha").
func versionDir(v string) string {
	v = strings.Fields(v + " x")[0]
	return "conduit-" + strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '-'
		}
		return r
	}, v)
}
