package exportfmt

import (
	"errors"
	"fmt"
	"os"

	"filippo.io/age"
)

// ErrNoIdentity is returned for an identity file that holds no age identity.
var ErrNoIdentity = errors.New("no age identity in it (give the file age-keygen wrote)")

// ReadIdentities reads the age identities that decrypt an export (a file as age-keygen writes it).
func ReadIdentities(path string) ([]age.Identity, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("age identity file: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("age identity file %s: %w", path, err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("age identity file %s: %w", path, ErrNoIdentity)
	}
	return ids, nil
}
