package main

import (
	"fmt"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/eventcache"
	"github.com/transition-matrix/transition-matrix/eventsource"
	"github.com/transition-matrix/transition-matrix/logging"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// loadConfig reads the configuration named by -config, checks the keys the command needs, and
// prints its warnings; a problem in it ends the command with exit status 2.
func loadConfig(env *Env, path string, required ...string) (*config.Config, error) {
	if path == "" {
		return nil, usagef("-config is required")
	}
	cfg, err := config.Load(path, env.Getenv)
	if err != nil {
		return nil, exitWith(exitCannotRun, err)
	}
	if err := cfg.Require(required...); err != nil {
		return nil, exitWith(exitCannotRun, fmt.Errorf("%s: %w", path, err))
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(env.Stderr, "warning: %s\n", w)
	}
	env.configPath = path
	noteURLs(env, cfg)
	return cfg, nil
}

// noteURLs remembers which configuration key names each server URL, for unreachable's message;
// commands call it again after a flag such as -target replaced one.
func noteURLs(env *Env, cfg *config.Config) {
	env.urlKeys = map[string]string{}
	for _, k := range []struct{ key, url string }{{"target.url", cfg.Target.URL},
		{"synapse.federation_url", cfg.Synapse.FederationURL}, {"synapse.url", cfg.Synapse.URL}} {
		if u, err := url.Parse(k.url); err == nil && u.Host != "" {
			env.urlKeys[u.Scheme+"://"+u.Host] = k.key
		}
	}
}

// newLogger builds the command's logger from the configuration, writing to stderr.
func newLogger(env *Env, cfg *config.Config) (*zap.Logger, error) {
	log, err := logging.New(env.Stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return nil, err
	}
	logging.BridgeLogrus(log)
	return log, nil
}

// loadConfigAndLogger is loadConfig followed by newLogger, for the long-running commands.
func loadConfigAndLogger(env *Env, path string, required ...string) (*config.Config, *zap.Logger, error) {
	cfg, err := loadConfig(env, path, required...)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(env, cfg)
	return cfg, log, err
}

// shimParts is what serve and archive share: the Synapse client, the cache, and the event source.
type shimParts struct {
	client *synapseclient.Client // nil when no Synapse is configured
	cache  *eventcache.Cache
	source *eventsource.Source
}

func (p *shimParts) Close() error { return p.cache.Close() }

// openShim opens the event cache and builds the event source over Synapse's federation API
// (signed as the server itself), or over the cache alone when no Synapse URL is configured.
func openShim(cfg *config.Config, log *zap.Logger, m eventsource.Metrics) (*shimParts, error) {
	p := &shimParts{}
	var up synapseclient.FederationAPI
	var keys eventsource.KeyFetcher
	var admin eventsource.RoomStateAPI
	if cfg.FederationURL() != "" {
		c, err := synapseclient.New(synapseclient.Config{BaseURL: cfg.Synapse.URL, FederationURL: cfg.Synapse.FederationURL,
			AdminToken: string(cfg.Synapse.AdminToken), ServerName: cfg.ServerName, Identity: cfg.Identity,
			Timeout: 30 * time.Second, MaxTotalWait: 30 * time.Second,
			OnRetry: func(e synapseclient.RetryEvent) {
				log.Warn("retrying a Synapse request", zap.String("endpoint", e.Endpoint), zap.Int("attempt", e.Attempt),
					zap.Int("status", e.Status), zap.Duration("wait", e.Wait), zap.Error(e.Err))
			}})
		if err != nil {
			return nil, err
		}
		p.client = c
		up = c.Federation()
		keys = &eventsource.NotaryKeys{Client: c.Federation(), Identity: cfg.Identity}
		if cfg.Synapse.AdminToken != "" && cfg.Synapse.URL != "" {
			admin = c.Admin() // make_join and send_join read the current state with it
		}
	}
	cache, err := eventcache.Open(cfg.Path(cfg.Cache.Path), eventcache.Options{})
	if err != nil {
		return nil, fmt.Errorf("opening the event cache: %w", err)
	}
	p.cache = cache
	src, err := eventsource.New(eventsource.Config{Identity: cfg.Identity, Cache: cache, Upstream: up, Admin: admin, Keys: keys, Metrics: m, Logger: log})
	if err != nil {
		cache.Close()
		return nil, err
	}
	p.source = src
	return p, nil
}
