package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/transition-matrix/transition-matrix/cacheshare"
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
// then shuts both down gracefully. Everything that can fail at start (addresses, TLS files) is
// tried before the cache is opened, so a serve that cannot start leaves no cache file behind.
func serve(ctx context.Context, env *Env, cfg *config.Config, log *zap.Logger) error {
	var allow []netip.Prefix
	for _, c := range cfg.AllowCIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return exitWith(exitCannotRun, fmt.Errorf("allow_cidrs: %w", err))
		}
		allow = append(allow, p)
	}
	var tlsConfig *tls.Config
	if cfg.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.TLS.Key))
		if err != nil {
			return exitWith(exitCannotRun, fmt.Errorf("tls.cert, tls.key: %w", err))
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return exitWith(exitCannotRun, fmt.Errorf("listen %s: %w (is another process using it? choose another port in listen)", cfg.Listen, err))
	}
	defer ln.Close()
	m := metrics.New()
	var ml *metrics.Listener
	if cfg.Metrics.Listen != "" {
		if ml, err = metrics.Listen(cfg.Metrics.Listen, m, log); err != nil {
			return exitWith(exitCannotRun, fmt.Errorf("metrics.listen: %w", err))
		}
	}
	parts, err := openShim(cfg, log, m)
	if err != nil {
		if ml != nil {
			ml.Close()
		}
		return exitWith(exitCannotRun, err)
	}
	defer parts.Close()
	if parts.client == nil {
		log.Warn("no Synapse configured: answering from the event cache alone")
	}
	l := cfg.Limits
	handler, err := federation.New(federation.Config{Identity: cfg.Identity, Source: parts.source, AllowCIDRs: allow,
		Version: version, Logger: log, Metrics: m, MaxBodyBytes: l.MaxBodyBytes, RequestTimeout: l.RequestTimeout,
		BodyReadTimeout: l.BodyReadTimeout, MaxBodyReaders: l.MaxBodyReaders})
	if err != nil {
		if ml != nil {
			ml.Close()
		}
		return exitWith(exitCannotRun, err)
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	// Printed whatever log.level says: with listen on port 0 it is the only way to learn the port.
	fmt.Fprintf(env.Stderr, "shim serve: serving federation for %s at %s://%s\n", cfg.ServerName, scheme, ln.Addr())
	if ml != nil {
		fmt.Fprintf(env.Stderr, "shim serve: serving metrics at http://%s/metrics\n", ml.Addr())
		if env.Ready != nil {
			env.Ready("metrics", ml.Addr().String())
		}
	}
	// Other shim commands (verify) read the cache this process holds through a socket beside it;
	// it is bound before Ready is told, so whoever waits on Ready finds it.
	share := &cacheshare.Server{Cache: parts.cache}
	if parts.client != nil {
		share.Refresh = func(ctx context.Context, roomID string, heads []string) error {
			return parts.source.ArchiveRoom(ctx, roomID, heads, nil).Err
		}
	}
	sl, err := cacheshare.Listen(cfg.Path(cfg.Cache.Path))
	if err != nil {
		log.Warn("shim verify cannot read the event cache while serve runs", zap.Error(err))
	}
	srv := federation.NewHTTPServer(handler, federation.HTTPLimits{MaxHeaderBytes: l.MaxHeaderBytes,
		HeaderReadTimeout: l.HeaderReadTimeout, IdleTimeout: l.IdleTimeout}, zap.NewStdLog(log.Named("http")))
	srv.TLSConfig = tlsConfig
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		log.Info("serving federation", zap.String("addr", ln.Addr().String()), zap.Bool("tls", tlsConfig != nil),
			zap.String("server_name", cfg.ServerName))
		if env.Ready != nil {
			env.Ready("federation", ln.Addr().String())
		}
		var err error
		if tlsConfig != nil {
			err = srv.ServeTLS(ln, "", "")
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
	if sl != nil {
		g.Go(func() error { return share.Serve(gctx, sl) })
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
