package main

import (
	"fmt"
	"net/http"
	"time"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/cutover"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// newTargetClient is the client rejoin and warm drive the target with: a join or a backfilling
// page can take long, so one attempt may take 5 minutes.
func newTargetClient(cfg *config.Config, attempts int, deviceID, deviceName string) *cutover.Client {
	return &cutover.Client{BaseURL: cfg.Target.URL, Token: string(cfg.Target.Token), HTTP: &http.Client{},
		Attempts: attempts, Timeout: 5 * time.Minute, DeviceID: deviceID, DeviceName: deviceName}
}

// loadTargetConfig loads the configuration for a command that drives the target: Synapse's admin
// API, target.url (the -target flag overrides it) and target.token.
func loadTargetConfig(env *Env, path, targetFlag string) (*config.Config, error) {
	cfg, err := loadConfig(env, path, "synapse.url", "synapse.admin_token")
	if err != nil {
		return nil, err
	}
	if err := cfg.OverrideTargetURL(targetFlag); err != nil {
		return nil, usagef("%v", err)
	}
	noteURLs(env, cfg)
	if err := cfg.Require("target.url", "target.token"); err != nil {
		return nil, exitWith(exitCannotRun, fmt.Errorf("%s: %w", path, err))
	}
	return cfg, nil
}

// newAdminClient is a Synapse client for the admin API.
func newAdminClient(cfg *config.Config) (*synapseclient.AdminClient, error) {
	c, err := synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, FederationURL: cfg.Synapse.FederationURL,
		AdminToken: string(cfg.Synapse.AdminToken), ServerName: cfg.ServerName, Identity: cfg.Identity,
		Timeout: 30 * time.Second, MaxTotalWait: 30 * time.Second})
	if err != nil {
		return nil, err
	}
	return c.Admin(), nil
}
