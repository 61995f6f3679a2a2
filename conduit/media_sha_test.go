package conduit_test

import (
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
)

// failingReader fails the test's import if anything reads it.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("the content was read although a file under its recorded sha256 exists")
	return 0, io.ErrUnexpectedEOF
}

// Synapse after 1.120 records each upload's sha256: a file already stored under it is used as it is
// (no copy, no second hash), and bytes that do not match it are refused.
func TestMediaRecordedSHA256(t *testing.T) {
	const pngSum = "d013614dc14a37ee20fe92005737ab7d3427e7e93580ad56ef8a42205e7f7a4e" // sha256("png bytes")
	db, dir := openFresh(t, 18)
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m1", SHA256: pngSum}, []byte("png bytes"))
	})
	update(t, db, func(tx *conduit.Tx) error {
		return tx.PutMedia(conduit.Media{Server: server, MediaID: "m2", SHA256: pngSum, Filename: "b.png"}, failingReader{t})
	})
	if mf, ok, err := db.Media(server, "m2"); err != nil || !ok || string(mf.Content) != "png bytes" || mf.Size != 9 {
		t.Fatalf("m2 by its recorded hash: %+v %v %v", mf, ok, err)
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 1)

	// Damaged bytes: refused, with the fix, and nothing left behind.
	_, err := db.Update(func(tx *conduit.Tx) error {
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m3", SHA256: strings.Repeat("ab", 32)}, []byte("other bytes"))
	})
	if !errors.Is(err, conduit.ErrMediaHashMismatch) || !strings.Contains(err.Error(), "restore it from a backup of media_store_path") {
		t.Fatalf("mismatch: %v", err)
	}
	if _, ok, _ := db.Media(server, "m3"); ok {
		t.Error("m3 written despite the mismatch")
	}
	onlyMediaFiles(t, filepath.Join(dir, "media"), 1)
	_, err = db.Update(func(tx *conduit.Tx) error {
		return tx.PutMediaBytes(conduit.Media{Server: server, MediaID: "m4", SHA256: "xyz"}, []byte("x"))
	})
	if err == nil || !strings.Contains(err.Error(), "not 64 hex digits") {
		t.Fatalf("bad recorded hash: %v", err)
	}
}
