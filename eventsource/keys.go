package eventsource

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
	"github.com/transition-matrix/transition-matrix/synapseclient"
)

// ErrUnknownKey is returned by a KeyFetcher that holds no key with the asked ID.
var ErrUnknownKey = errors.New("unknown signing key")

// KeyFetcher gives the public keys other servers sign their events with.
type KeyFetcher interface {
	PublicKey(ctx context.Context, server, keyID string) (ed25519.PublicKey, error)
}

// StaticKeys is a fixed key set, server → key ID → public key; tests and offline runs use it.
type StaticKeys map[string]map[string]ed25519.PublicKey

// PublicKey implements KeyFetcher.
func (s StaticKeys) PublicKey(_ context.Context, server, keyID string) (ed25519.PublicKey, error) {
	if k, ok := s[server][keyID]; ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %s %s", ErrUnknownKey, server, keyID)
}

// NotaryKeys asks Synapse, as a notary, for the keys of the servers that share its rooms, checks
// each document's self-signature and Synapse's countersignature, and remembers the answers.
type NotaryKeys struct {
	Client   *synapseclient.FederationClient
	Identity *signing.Identity // Synapse's own keys, to check the countersignature

	mu      sync.Mutex
	known   map[string]map[string]ed25519.PublicKey
	calls   map[string]*notaryCall // one request per server at a time
	waiting int                    // callers waiting on a request another caller started (tests)
}

type notaryCall struct {
	done chan struct{}
	err  error
}

// notaryTimeout bounds one shared key request: it outlives the caller that started it, so that
// caller's deadline or cancellation cannot fail the others waiting on it.
const notaryTimeout = 2 * time.Minute

// PublicKey implements KeyFetcher; a key not in the last answer for server asks again. Callers
// asking for the same server share one request, and each stops waiting when its own ctx ends.
func (n *NotaryKeys) PublicKey(ctx context.Context, server, keyID string) (ed25519.PublicKey, error) {
	for attempt := 0; attempt < 2; attempt++ {
		n.mu.Lock()
		if k, ok := n.known[server][keyID]; ok {
			n.mu.Unlock()
			return k, nil
		}
		if attempt == 1 {
			n.mu.Unlock()
			break
		}
		c, running := n.calls[server]
		if running {
			n.waiting++
		} else {
			if n.calls == nil {
				n.calls = map[string]*notaryCall{}
			}
			c = &notaryCall{done: make(chan struct{})}
			n.calls[server] = c
			go n.run(context.WithoutCancel(ctx), server, c)
		}
		n.mu.Unlock()
		var err error
		select {
		case <-c.done:
			err = c.err
		case <-ctx.Done():
			err = ctx.Err()
		}
		if running {
			n.mu.Lock()
			n.waiting--
			n.mu.Unlock()
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w: %s %s (not published by the server nor known to Synapse)", ErrUnknownKey, server, keyID)
}

// run makes the shared request for server's keys and tells every caller waiting on c.
func (n *NotaryKeys) run(ctx context.Context, server string, c *notaryCall) {
	ctx, cancel := context.WithTimeout(ctx, notaryTimeout)
	defer cancel()
	c.err = n.fetch(ctx, server)
	n.mu.Lock()
	delete(n.calls, server)
	n.mu.Unlock()
	close(c.done)
}

// waiters is how many callers wait on a request another caller started.
func (n *NotaryKeys) waiters() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.waiting
}

func (n *NotaryKeys) fetch(ctx context.Context, server string) error {
	docs, err := n.Client.QueryServerKeys(ctx, server)
	if err != nil {
		return fmt.Errorf("asking Synapse for the keys of %s: %w", server, err)
	}
	keys := map[string]ed25519.PublicKey{}
	for _, d := range docs {
		if d.ServerName != server {
			continue
		}
		own := map[string]ed25519.PublicKey{}
		for id, vk := range d.VerifyKeys {
			if pub, err := decodeKey(vk.Key); err == nil {
				own[string(id)] = pub
			}
		}
		if !signedByAny(d.Raw, server, own) {
			return fmt.Errorf("the key document Synapse holds for %s is not signed by %s's own key", server, server)
		}
		if server != n.Identity.ServerName && !signedByAny(d.Raw, n.Identity.ServerName, identityKeys(n.Identity)) {
			return fmt.Errorf("the key document for %s is not countersigned by %s", server, n.Identity.ServerName)
		}
		for id, pub := range own {
			keys[id] = pub
		}
		for id, ok := range d.OldVerifyKeys {
			if pub, err := decodeKey(ok.Key); err == nil {
				keys[string(id)] = pub
			}
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.known == nil {
		n.known = map[string]map[string]ed25519.PublicKey{}
	}
	n.known[server] = keys
	return nil
}

func identityKeys(id *signing.Identity) map[string]ed25519.PublicKey {
	out := map[string]ed25519.PublicKey{}
	for _, k := range id.Keys {
		out[string(k.ID)] = k.PublicKey()
	}
	return out
}

// signedByAny reports whether doc carries a valid signature of server by one of keys.
func signedByAny(doc []byte, server string, keys map[string]ed25519.PublicKey) bool {
	ids, err := signing.SignatureKeyIDs(server, doc)
	if err != nil {
		return false
	}
	for _, id := range ids {
		if pub, ok := keys[string(id)]; ok && signing.VerifyJSON(server, id, pub, doc) == nil {
			return true
		}
	}
	return false
}

func decodeKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, errors.New("not an Ed25519 public key")
	}
	return ed25519.PublicKey(b), nil
}

// withIdentity answers the shim's own server name from its identity (current and old keys,
// derived once) and every other server from next.
type withIdentity struct {
	server string
	own    map[string]ed25519.PublicKey
	next   KeyFetcher
}

func newWithIdentity(id *signing.Identity, next KeyFetcher) withIdentity {
	own := identityKeys(id)
	for _, k := range id.OldKeys {
		own[string(k.ID)] = k.Public
	}
	return withIdentity{server: id.ServerName, own: own, next: next}
}

func (w withIdentity) PublicKey(ctx context.Context, server, keyID string) (ed25519.PublicKey, error) {
	if server == w.server {
		if pub, ok := w.own[keyID]; ok {
			return pub, nil
		}
		return nil, fmt.Errorf("%w: %s %s is not among the transferred keys", ErrUnknownKey, server, keyID)
	}
	if w.next == nil {
		return nil, fmt.Errorf("%w: no key source for %s", ErrUnknownKey, server)
	}
	return w.next.PublicKey(ctx, server, keyID)
}
