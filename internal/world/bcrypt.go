package world

import (
	"encoding/base64"
	"fmt"

	"golang.org/x/crypto/blowfish"
)

// bcryptEncoding is bcrypt's own base64 alphabet, unpadded.
var bcryptEncoding = base64.NewEncoding("./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789").WithPadding(base64.NoPadding)

// bcryptHash computes a "$2b$" bcrypt hash with a caller-chosen salt, so that
// worlds stay reproducible (x/crypto/bcrypt always draws a random salt).
func bcryptHash(password string, cost int, salt []byte) (string, error) {
	if len(salt) != 16 || cost < 4 || cost > 31 || len(password) > 72 {
		return "", fmt.Errorf("bcrypt: bad parameters")
	}
	key := append([]byte(password), 0) // the C implementations hash the trailing NUL
	c, err := blowfish.NewSaltedCipher(key, salt)
	if err != nil {
		return "", err
	}
	for range 1 << cost {
		blowfish.ExpandKey(key, c)
		blowfish.ExpandKey(salt, c)
	}
	data := []byte("OrpheanBeholderScryDoubt")
	for i := 0; i < len(data); i += 8 {
		for range 64 {
			c.Encrypt(data[i:i+8], data[i:i+8])
		}
	}
	return fmt.Sprintf("$2b$%02d$%s%s", cost, bcryptEncoding.EncodeToString(salt), bcryptEncoding.EncodeToString(data[:23])), nil
}
