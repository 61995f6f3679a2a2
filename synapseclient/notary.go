package synapseclient

import (
	"context"
	"encoding/json"
	"fmt"
)

// QueryServerKeys asks Synapse, as a notary, for the keys it holds for serverName
// (unauthenticated). Each document keeps its raw bytes; the caller checks the server's own
// signature and Synapse's countersignature.
// https://spec.matrix.org/v1.16/server-server-api/#get_matrixkeyv2queryservername
func (f *FederationClient) QueryServerKeys(ctx context.Context, serverName string) ([]ServerKeys, error) {
	const template = "/_matrix/key/v2/query/{serverName}"
	c := &call{endpoint: "GET " + template, method: "GET", base: f.base, path: fillPath(template, serverName), auth: noAuth, idempotent: true}
	body, err := f.t.do(ctx, c)
	if err != nil {
		return nil, err
	}
	root, err := parseObject(c.endpoint, body)
	if err != nil {
		return nil, err
	}
	list := root.Get("server_keys")
	if !list.IsArray() {
		return nil, fmt.Errorf("synapseclient: %s: answer has no server_keys list", c.endpoint)
	}
	var out []ServerKeys
	for _, doc := range list.Array() {
		raw := rawOf(body, doc)
		var k ServerKeys
		if err := json.Unmarshal(raw, &k); err != nil {
			return nil, fmt.Errorf("synapseclient: %s: key document: %w", c.endpoint, err)
		}
		k.Raw = append(json.RawMessage(nil), raw...)
		out = append(out, k)
	}
	return out, nil
}
