package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
)

// conduitKeyValidity is how long the keys seeded into Conduit's server_signingkeys stay valid:
// long enough that Conduit never tries to fetch its own keys again after Synapse is gone.
const conduitKeyValidity = 10 * 365 * 24 * time.Hour

// runKeys prints the server's signed /_matrix/key/v2/server document, or with -conduit the values
// Conduit stores for the key.
func runKeys(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "keys", "keys -config FILE [-conduit] [-valid-for DURATION]")
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	conduit := fs.Bool("conduit", false, `print {"keypair", "server_signingkeys"} for Conduit's global and server_signingkeys trees`)
	validFor := fs.Duration("valid-for", 0, "validity of the printed keys (default 24h for the key document, 10 years for -conduit)")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *configPath)
	if err != nil {
		return err
	}
	out, err := keysOutput(cfg.Identity, *conduit, *validFor, time.Now())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(env.Stdout, "%s\n", out)
	return err
}

// keysOutput renders what `shim keys` prints.
func keysOutput(id *signing.Identity, conduit bool, validFor time.Duration, now time.Time) ([]byte, error) {
	if !conduit {
		if validFor == 0 {
			validFor = signing.DefaultKeyValidity
		}
		return id.KeyDocument(now.Add(validFor))
	}
	if validFor == 0 {
		validFor = conduitKeyValidity
	}
	ssk, err := id.ConduitServerSigningKeys(now.Add(validFor))
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(struct {
		Keypair           string          `json:"keypair"`
		ServerSigningKeys json.RawMessage `json:"server_signingkeys"`
	}{base64.StdEncoding.EncodeToString(id.SigningKey().ConduitKeypair()), ssk}, "", "  ")
}
