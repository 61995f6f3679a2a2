package export

import (
	"context"
	"net/http"
	"sync/atomic"

	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// newClient is the Synapse client of the export: at least Jobs connections to Synapse, kept open
// between requests, every request counted.
func (e *exporter) newClient() (*synapseclient.Client, error) {
	scfg := e.cfg.Synapse
	if scfg.MaxPerHost < e.cfg.Jobs {
		scfg.MaxPerHost = e.cfg.Jobs
	}
	var base http.RoundTripper
	if scfg.HTTPClient != nil && scfg.HTTPClient.Transport != nil {
		base = scfg.HTTPClient.Transport
	} else {
		// http.DefaultTransport keeps 2 idle connections per host: with more workers, every
		// other request would open a new connection.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = scfg.MaxPerHost
		base = tr
	}
	hc := &http.Client{Transport: countingTransport{base, &e.stats.requests}}
	if scfg.HTTPClient != nil {
		hc.Timeout = scfg.HTTPClient.Timeout
	}
	scfg.HTTPClient = hc
	return synapseclient.New(scfg)
}

// fedCall runs f holding one of the federation slots.
func (e *exporter) fedCall(ctx context.Context, f func() error) error {
	select {
	case e.fedSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.fedSem }()
	return f()
}

func (e *exporter) fedCallValue(ctx context.Context, f func() (*synapseclient.ServerKeys, error)) (*synapseclient.ServerKeys, error) {
	var out *synapseclient.ServerKeys
	err := e.fedCall(ctx, func() error {
		var err error
		out, err = f()
		return err
	})
	return out, err
}

// countingTransport counts the HTTP requests sent.
type countingTransport struct {
	next http.RoundTripper
	n    *atomic.Int64
}

func (t countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.n.Add(1)
	return t.next.RoundTrip(r)
}
