package signing

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxCanonicalDepth is how deeply arrays and objects may nest in a request body; Synapse's Python
// JSON decoder stops near 1,000 levels, so nothing Synapse signs is refused.
const MaxCanonicalDepth = 512

// appendCanonical writes the canonical form of the one JSON value in `in` to buf without building
// a tree of it: arrays and scalars stream through, and an object's members are written in the
// order received and then moved into key order inside buf. Memory is about twice the input.
// Its output equals CanonicalJSON's for every input nested at most MaxCanonicalDepth deep.
func appendCanonical(buf *bytes.Buffer, in []byte) error {
	if !utf8.Valid(in) {
		return errors.New("canonical json: input is not valid UTF-8")
	}
	s := &streamCanon{in: in, buf: buf}
	s.skipSpace()
	if err := s.value(0); err != nil {
		return err
	}
	s.skipSpace()
	if s.pos != len(s.in) {
		return errors.New("canonical json: trailing data after the JSON value")
	}
	return nil
}

// streamCanon is one appendCanonical run: the input, the read position and the output.
type streamCanon struct {
	in  []byte
	pos int
	buf *bytes.Buffer
	// strict refuses what an event check must not decide on its fast path: a number that is
	// not an integer of at most 53 bits, and a key repeated in an object.
	strict bool
	// top receives the members of the outermost object in output order (sorted, offsets in buf).
	top *[]member
}

// errNotStrict is a value strict mode refuses.
var errNotStrict = errors.New("canonical json: not an integer of at most 53 bits, or a repeated key")

// member is one object member as written to the output: its decoded key and where its
// `"key":value` text starts and ends in the output buffer.
type member struct {
	key        string
	start, end int
}

func (s *streamCanon) errorf(format string, args ...any) error {
	return fmt.Errorf("canonical json: offset %d: %s", s.pos, fmt.Sprintf(format, args...))
}

func (s *streamCanon) skipSpace() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

func (s *streamCanon) value(depth int) error {
	if s.pos == len(s.in) {
		return s.errorf("unexpected end of input")
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		str, err := s.str()
		if err != nil {
			return err
		}
		writeCanonicalString(s.buf, str)
		return nil
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(s.in[s.pos:], []byte(lit)) {
				s.pos += len(lit)
				s.buf.WriteString(lit)
				return nil
			}
		}
		return s.errorf("invalid character %q looking for a value", c)
	}
}

func (s *streamCanon) array(depth int) error {
	if depth > MaxCanonicalDepth {
		return s.errorf("nested deeper than %d levels", MaxCanonicalDepth)
	}
	s.pos++ // '['
	s.buf.WriteByte('[')
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		s.buf.WriteByte(']')
		return nil
	}
	for first := true; ; first = false {
		if !first {
			s.buf.WriteByte(',')
		}
		s.skipSpace()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		if s.pos == len(s.in) {
			return s.errorf("unexpected end of input in an array")
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			s.buf.WriteByte(']')
			return nil
		default:
			return s.errorf("invalid character %q after an array element", s.in[s.pos])
		}
	}
}

func (s *streamCanon) object(depth int) error {
	if depth > MaxCanonicalDepth {
		return s.errorf("nested deeper than %d levels", MaxCanonicalDepth)
	}
	s.pos++ // '{'
	s.buf.WriteByte('{')
	region := s.buf.Len()
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		s.buf.WriteByte('}')
		return nil
	}
	var members []member
	sorted := true
	for {
		s.skipSpace()
		if s.pos == len(s.in) || s.in[s.pos] != '"' {
			return s.errorf("want a string as an object key")
		}
		key, err := s.str()
		if err != nil {
			return err
		}
		s.skipSpace()
		if s.pos == len(s.in) || s.in[s.pos] != ':' {
			return s.errorf("want ':' after an object key")
		}
		s.pos++
		s.skipSpace()
		if len(members) > 0 {
			s.buf.WriteByte(',')
		}
		start := s.buf.Len()
		writeCanonicalString(s.buf, key)
		s.buf.WriteByte(':')
		if err := s.value(depth); err != nil {
			return err
		}
		if n := len(members); n > 0 && members[n-1].key >= key {
			sorted = false // out of order, or a repeated key
		}
		members = append(members, member{key: key, start: start, end: s.buf.Len()})
		s.skipSpace()
		if s.pos == len(s.in) {
			return s.errorf("unexpected end of input in an object")
		}
		if s.in[s.pos] == '}' {
			s.pos++
			break
		}
		if s.in[s.pos] != ',' {
			return s.errorf("invalid character %q after an object member", s.in[s.pos])
		}
		s.pos++
	}
	if sorted {
		if depth == 1 && s.top != nil {
			*s.top = members
		}
		s.buf.WriteByte('}')
		return nil
	}
	// Sort by key, keep the last of repeated keys (as a decoder into a map does), and rewrite the
	// region in that order.
	text := slices.Clone(s.buf.Bytes()[region:])
	for i := range members {
		members[i].start -= region
		members[i].end -= region
	}
	slices.SortStableFunc(members, func(a, b member) int { return strings.Compare(a.key, b.key) })
	s.buf.Truncate(region)
	kept := members[:0]
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			if s.strict {
				return errNotStrict
			}
			continue
		}
		if s.buf.Len() > region {
			s.buf.WriteByte(',')
		}
		start := s.buf.Len()
		s.buf.Write(text[m.start:m.end])
		kept = append(kept, member{key: m.key, start: start, end: s.buf.Len()})
	}
	if depth == 1 && s.top != nil {
		*s.top = kept
	}
	s.buf.WriteByte('}')
	return nil
}

// str reads a string literal at pos and returns its decoded value; without escapes the value
// views the input, so it must not outlive the canonicalisation.
func (s *streamCanon) str() (string, error) {
	start := s.pos
	s.pos++ // '"'
	escaped := false
	for {
		if s.pos == len(s.in) {
			return "", s.errorf("unterminated string")
		}
		c := s.in[s.pos]
		switch {
		case c == '"':
			s.pos++
			lit := s.in[start:s.pos]
			if !escaped { // a view of the input, not a copy: callers use it only during the pass
				return unsafeString(lit[1 : len(lit)-1]), nil
			}
			var out string
			if err := json.Unmarshal(lit, &out); err != nil {
				return "", fmt.Errorf("canonical json: offset %d: %w", start, err)
			}
			return out, nil
		case c == '\\':
			escaped = true
			if s.pos+1 == len(s.in) {
				return "", s.errorf("unterminated string")
			}
			s.pos += 2
		case c < 0x20:
			return "", s.errorf("control character 0x%02x in a string", c)
		default:
			s.pos++
		}
	}
}

// number reads a number literal by the JSON grammar and writes it as Python would.
func (s *streamCanon) number() error {
	start := s.pos
	digits := func() int {
		n := 0
		for s.pos < len(s.in) && s.in[s.pos] >= '0' && s.in[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.in[s.pos] == '-' {
		s.pos++
	}
	if s.pos < len(s.in) && s.in[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		return s.errorf("invalid number")
	}
	integer := true
	if s.pos < len(s.in) && s.in[s.pos] == '.' {
		integer = false
		s.pos++
		if digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	if s.pos < len(s.in) && (s.in[s.pos] == 'e' || s.in[s.pos] == 'E') {
		integer = false
		s.pos++
		if s.pos < len(s.in) && (s.in[s.pos] == '+' || s.in[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.errorf("invalid number")
		}
	}
	lit := s.in[start:s.pos]
	if s.strict && (!integer || !int53(lit) || string(lit) == "-0") {
		return errNotStrict
	}
	if integer {
		// A JSON integer has no leading zeros or '+': its text is already canonical, but for -0.
		if string(lit) == "-0" {
			lit = lit[1:]
		}
		s.buf.Write(lit)
		return nil
	}
	out, err := canonicalNumber(string(lit))
	if err != nil {
		return err
	}
	s.buf.WriteString(out)
	return nil
}

// int53 reports whether an integer literal is within ±(2^53-1), the range canonical JSON allows.
func int53(lit []byte) bool {
	d := lit
	if len(d) > 0 && d[0] == '-' {
		d = d[1:]
	}
	if len(d) < 16 {
		return true
	}
	if len(d) > 16 {
		return false
	}
	return string(d) <= "9007199254740991"
}
