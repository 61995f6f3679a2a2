package conduit

import (
	"encoding/binary"
	"strings"
)

// sep is the separator of Conduit's composite keys.
const sep = 0xFF

// join builds a composite key: the parts separated by 0xFF.
func join(parts ...[]byte) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			out = append(out, sep)
		}
		out = append(out, p...)
	}
	return out
}

// joinS is join for strings.
func joinS(parts ...string) []byte {
	bs := make([][]byte, len(parts))
	for i, p := range parts {
		bs[i] = []byte(p)
	}
	return join(bs...)
}

// be64 is a u64 big-endian, the encoding of every Conduit count.
func be64(n uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, n)
}

func be32(n uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, n)
}

// userDeviceKey is user 0xFF device (userdeviceid_metadata, userdeviceid_token, keyid_key for device keys).
func userDeviceKey(user, device string) []byte { return joinS(user, device) }

// accountDataTypeKey is roomusertype_roomuserdataid's key: room (empty for global) 0xFF user 0xFF type.
func accountDataTypeKey(room, user, typ string) []byte { return joinS(room, user, typ) }

// accountDataKey is roomuserdataid_accountdata's key: room 0xFF user 0xFF count8 0xFF type.
func accountDataKey(room, user string, count uint64, typ string) []byte {
	return join([]byte(room), []byte(user), be64(count), []byte(typ))
}

// localpart is the part of a user ID between @ and the first colon.
func localpart(user string) string {
	s := strings.TrimPrefix(user, "@")
	if i := strings.IndexByte(s, ':'); i >= 0 {
		return s[:i]
	}
	return s
}
