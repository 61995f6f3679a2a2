package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// ShutdownTimeout is how long a stopping listener waits for scrapes in flight.
const ShutdownTimeout = 5 * time.Second

// Listener serves /metrics on its own address, apart from the federation listener.
type Listener struct {
	ln  net.Listener
	srv *http.Server
	log *zap.Logger
}

// Listen binds addr (host:port; port 0 picks a free one) for m's /metrics endpoint.
func Listen(addr string, m *Metrics, log *zap.Logger) (*Listener, error) {
	if m == nil {
		return nil, errors.New("metrics: listen: no metrics to serve")
	}
	if log == nil {
		log = zap.NewNop()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          zap.NewStdLog(log.Named("metrics")),
	}
	return &Listener{ln: ln, srv: srv, log: log}, nil
}

// Addr is the bound address, e.g. to find the port chosen for ":0".
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Close releases the address of a listener that was never served (a start that failed after Listen).
func (l *Listener) Close() error { return l.ln.Close() }

// Serve answers scrapes until ctx ends, then shuts down gracefully; it returns nil after a
// shutdown and the server's error otherwise.
func (l *Listener) Serve(ctx context.Context) error {
	l.log.Info("metrics listening", zap.String("addr", l.ln.Addr().String()), zap.String("path", "/metrics"))
	stopped := make(chan error, 1)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
		defer cancel()
		stopped <- l.srv.Shutdown(sctx)
	}()
	err := l.srv.Serve(l.ln)
	if !errors.Is(err, http.ErrServerClosed) {
		l.srv.Close()
		return fmt.Errorf("metrics: serve on %s: %w", l.ln.Addr(), err)
	}
	if err := <-stopped; err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	l.log.Info("metrics listener stopped", zap.String("addr", l.ln.Addr().String()))
	return nil
}

// Serve binds addr and answers scrapes of m until ctx ends; an empty addr serves nothing and
// returns when ctx ends, so callers can pass metrics.listen as configured.
func Serve(ctx context.Context, addr string, m *Metrics, log *zap.Logger) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := Listen(addr, m, log)
	if err != nil {
		return err
	}
	return l.Serve(ctx)
}
