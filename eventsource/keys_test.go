package eventsource

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/testproc"
	"github.com/transition-matrix/transition-matrix/internal/world"
)

// TestNotaryKeysSharedRequestOutlivesItsStarter: the caller that started the one key request
// for a server gives up (its deadline passed), and another caller waiting on that request still
// gets the key once Synapse answers, from that one request.
func TestNotaryKeysSharedRequestOutlivesItsStarter(t *testing.T) {
	b := newBed(t, bedOptions{world: world.Options{Seed: 18, Users: 4, Rooms: 1, MessagesPerRoom: 1}})
	keys := &NotaryKeys{Client: b.client.Federation(), Identity: b.sim.Identity()}
	remote, keyID := b.w.RemoteServerName, b.w.RemoteKey.KeyID
	hold := b.sim.Faults().Hold("key.query")

	starterCtx, cancelStarter := context.WithCancel(context.Background())
	starterErr := make(chan error, 1)
	go func() {
		_, err := keys.PublicKey(starterCtx, remote, keyID)
		starterErr <- err
	}()
	<-hold.Arrived()
	type answer struct {
		pub []byte
		err error
	}
	waiter := make(chan answer, 1)
	go func() {
		pub, err := keys.PublicKey(context.Background(), remote, keyID)
		waiter <- answer{pub, err}
	}()
	ready, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tick := time.NewTicker(testproc.PollEvery)
	defer tick.Stop()
	for keys.waiters() == 0 {
		select {
		case <-ready.Done():
			t.Fatal("the second caller never waited on the running request")
		case <-tick.C:
		}
	}
	cancelStarter()
	if err := <-starterErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("the starter's lookup: %v, want its own cancellation", err)
	}
	hold.Release()
	got := <-waiter
	if got.err != nil {
		t.Fatalf("the waiting caller failed with the starter's cancellation: %v", got.err)
	}
	if !bytes.Equal(got.pub, b.w.RemoteKey.Public) {
		t.Fatalf("key %x, want %x", got.pub, b.w.RemoteKey.Public)
	}
	select {
	case <-hold.Arrived():
		t.Fatal("the waiting caller made a second key request")
	default:
	}
}
