package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/config"
	"github.com/transition-matrix/transition-matrix/federation"
	"github.com/transition-matrix/transition-matrix/metrics"
)

// shutdownGrace is how long requests in flight may finish after SIGINT or SIGTERM.
const shutdownGrace = 15 * time.Second

// version is reported by the federation /version endpoint.
const version = "0.1.0"

// runServe runs the federation sidecar until the context ends (SIGINT or SIGTERM).
func runServe(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "serve", "serve -config FILE")
	configPath := fs.String("config", "", "the shim's configuration `file` (required)")
	if err := fs.parse(args); err != nil {
		return err
	}
	cfg, log, err := loadConfigAndLogger(env, *configPath, "listen", "cache.path")
	if err != nil {
		return err
	}
	defer log.Sync()
	return serve(ctx, env, cfg, log)
}

// serve runs the federation listener (and the metrics listener when configured) until ctx ends,
// then shuts both down gracefully.
func serve(ctx context.Context, env *Env, cfg *config.Config, log *zap.Logger) error {
	m := metrics.New()
	parts, err := openShim(cfg, log, m)
	if err != nil {
		return err
	}
	defer parts.Close()
	if parts.client == nil {
		log.Warn("no Synapse configured: answering from the event cache alone")
	}
	var allow []netip.Prefix
	for _, c := range cfg.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("allow_cidrs: %w", err)
		}
		allow = append(allow, p)
	}
	l := cfg.Limits
	handler, err := federation.New(federation.Config{Identity: cfg.Identity, Source: parts.source, AllowCIDRs: allow,
		Version: version, Logger: log, Metrics: m, MaxBodyBytes: l.MaxBodyBytes, RequestTimeout: l.RequestTimeout,
		BodyReadTimeout: l.BodyReadTimeout, MaxBodyReaders: l.MaxBodyReaders})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	var ml *metrics.Listener
	if cfg.Metrics.Listen != "" {
		if ml, err = metrics.Listen(cfg.Metrics.Listen, m, log); err != nil {
			ln.Close()
			return err
		}
		if env.Ready != nil {
			env.Ready("metrics", ml.Addr().String())
		}
	}
	srv := federation.NewHTTPServer(handler, federation.HTTPLimits{MaxHeaderBytes: l.MaxHeaderBytes,
		HeaderReadTimeout: l.HeaderReadTimeout, IdleTimeout: l.IdleTimeout}, zap.NewStdLog(log.Named("http")))
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		tls := cfg.TLS.Cert != ""
		log.Info("serving federation", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tls),
			zap.String("server_name", cfg.ServerName))
		if env.Ready != nil {
			env.Ready("federation", ln.Addr().String())
		}
		var err error
		if tls {
			err = srv.ServeTLS(ln, cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.TLS.Key))
		} else {
			err = srv.Serve(ln)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	if ml != nil {
		g.Go(func() error { return ml.Serve(gctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		log.Info("shutting down: finishing requests in flight", zap.Duration("grace", shutdownGrace))
		sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		err := srv.Shutdown(sctx)
		if errors.Is(err, context.DeadlineExceeded) {
			log.Warn("closing the connections still open after the grace period")
			return srv.Close()
		}
		return err
	})
	return g.Wait()
}
