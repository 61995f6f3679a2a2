package signing

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Errors of X-Matrix authentication; each returned error wraps one of them.
var (
	ErrNoAuthorization   = errors.New("no X-Matrix Authorization header")
	ErrMalformedHeader   = errors.New("malformed X-Matrix Authorization header")
	ErrWrongDestination  = errors.New("destination mismatch in X-Matrix Authorization header")
	ErrUnknownKey        = errors.New("unknown signing key")
	ErrMalformedContent  = errors.New("request body is not a JSON object")
	errConflictingOrigin = errors.New("several X-Matrix headers name different origins")
)

// XMatrix is one parsed X-Matrix Authorization header. Destination is empty when the header has
// none (servers older than Matrix v1.3).
type XMatrix struct {
	Origin      string
	Destination string
	Key         KeyID
	Sig         string
}

// String renders the header the way senders should: one space after the scheme, lower-case names,
// quoted values, no white space around commas.
func (x XMatrix) String() string {
	var b strings.Builder
	b.WriteString(`X-Matrix origin="`)
	b.WriteString(x.Origin)
	b.WriteByte('"')
	if x.Destination != "" {
		b.WriteString(`,destination="`)
		b.WriteString(x.Destination)
		b.WriteByte('"')
	}
	b.WriteString(`,key="`)
	b.WriteString(string(x.Key))
	b.WriteString(`",sig="`)
	b.WriteString(x.Sig)
	b.WriteByte('"')
	return b.String()
}

// IsXMatrix reports whether an Authorization header value uses the X-Matrix scheme.
func IsXMatrix(header string) bool {
	scheme, _, _ := strings.Cut(header, " ")
	return strings.EqualFold(scheme, "X-Matrix")
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformedHeader, fmt.Sprintf(format, args...))
}

// ParseXMatrix parses one Authorization header value by the spec's grammar (RFC 9110 §11.4): a
// case-insensitive scheme, case-insensitive parameter names in any order, token or quoted values,
// optional spaces and tabs around commas. Unknown parameters are ignored; a repeated or missing
// origin, key or sig is an error, and so is anything the grammar does not allow.
func ParseXMatrix(header string) (XMatrix, error) {
	var x XMatrix
	if len(header) > 8192 {
		return x, malformed("header is %d bytes long", len(header))
	}
	for i := 0; i < len(header); i++ {
		if c := header[i]; (c < 0x20 && c != '\t') || c == 0x7f {
			return x, malformed("control character 0x%02x at offset %d", c, i)
		}
	}
	if len(header) < 9 || !strings.EqualFold(header[:8], "X-Matrix") {
		return x, malformed("scheme is not X-Matrix")
	}
	if header[8] != ' ' {
		return x, malformed("want a space after the X-Matrix scheme")
	}
	p := &paramParser{s: header, i: 9}
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
	if p.i == len(p.s) {
		return x, malformed("no parameters")
	}
	seen := map[string]bool{}
	for first := true; ; first = false {
		p.skipOWS()
		if p.i == len(p.s) {
			break
		}
		if !first {
			if p.s[p.i] != ',' {
				return x, malformed("want ',' between parameters at offset %d", p.i)
			}
			p.i++
			p.skipOWS()
			if p.i == len(p.s) {
				break // a trailing empty list element, which RFC 9110 §5.6.1 tells recipients to ignore
			}
			if p.s[p.i] == ',' {
				continue
			}
		}
		name, value, err := p.param()
		if err != nil {
			return x, err
		}
		switch name {
		case "origin", "destination", "key", "sig":
			if seen[name] {
				return x, malformed("parameter %q appears twice", name)
			}
			seen[name] = true
			if value == "" {
				return x, malformed("parameter %q is empty", name)
			}
		}
		switch name {
		case "origin":
			x.Origin = value
		case "destination":
			x.Destination = value
		case "key":
			x.Key = KeyID(value)
		case "sig":
			x.Sig = value
		}
	}
	for _, need := range []string{"origin", "key", "sig"} {
		if !seen[need] {
			return x, malformed("missing parameter %q", need)
		}
	}
	if err := checkServerName(x.Origin); err != nil {
		return x, malformed("origin: %v", err)
	}
	if x.Destination != "" {
		if err := checkServerName(x.Destination); err != nil {
			return x, malformed("destination: %v", err)
		}
	}
	alg, ver, ok := strings.Cut(string(x.Key), ":")
	if !ok || alg == "" || !validKeyVersion(ver) {
		return x, malformed("key %q is not <algorithm>:<version>", x.Key)
	}
	if sig, err := DecodeBase64(x.Sig); err != nil || (alg == "ed25519" && len(sig) != ed25519.SignatureSize) {
		return x, malformed("sig is not a base64 Ed25519 signature")
	}
	return x, nil
}

type paramParser struct {
	s string
	i int
}

func (p *paramParser) skipOWS() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t') {
		p.i++
	}
}

func isTchar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// param reads name=value; names are lower-cased, quoted values unescaped.
func (p *paramParser) param() (name, value string, err error) {
	start := p.i
	for p.i < len(p.s) && isTchar(p.s[p.i]) {
		p.i++
	}
	if p.i == start {
		return "", "", malformed("want a parameter name at offset %d", start)
	}
	name = strings.ToLower(p.s[start:p.i])
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return "", "", malformed("parameter %q has no '='", name)
	}
	p.i++
	if p.i < len(p.s) && p.s[p.i] == '"' {
		p.i++
		var b strings.Builder
		for {
			if p.i == len(p.s) {
				return "", "", malformed("unterminated quoted value of %q", name)
			}
			c := p.s[p.i]
			switch {
			case c == '"':
				p.i++
				return name, b.String(), nil
			case c == '\\':
				if p.i+1 == len(p.s) {
					return "", "", malformed("dangling backslash in value of %q", name)
				}
				b.WriteByte(p.s[p.i+1])
				p.i += 2
			default:
				b.WriteByte(c)
				p.i++
			}
		}
	}
	start = p.i
	// Recipients accept colons in unquoted values (spec compatibility rule), e.g. origin=host:8448.
	for p.i < len(p.s) && (isTchar(p.s[p.i]) || p.s[p.i] == ':') {
		p.i++
	}
	if p.i == start {
		return "", "", malformed("parameter %q has an empty or badly quoted value", name)
	}
	return name, p.s[start:p.i], nil
}

// checkServerName accepts host, host:port, IPv4 and [IPv6] literals, as the spec's server name grammar.
func checkServerName(s string) error {
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("%q has an unclosed IPv6 literal", s)
		}
		host, port = s[:end+1], strings.TrimPrefix(s[end+1:], ":")
		if end+1 < len(s) && s[end+1] != ':' {
			return fmt.Errorf("%q has junk after the IPv6 literal", s)
		}
		for _, c := range host[1 : len(host)-1] {
			if !(c == ':' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return fmt.Errorf("%q is not an IPv6 literal", s)
			}
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return fmt.Errorf("%q has an empty port", s)
			}
		}
		if host == "" || len(host) > 255 {
			return fmt.Errorf("%q has no valid host", s)
		}
		for _, c := range host {
			if !(c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
				return fmt.Errorf("%q holds %q, not allowed in a server name", s, c)
			}
		}
	}
	if len(port) > 5 {
		return fmt.Errorf("%q has a bad port", s)
	}
	for _, c := range port {
		if c < '0' || c > '9' {
			return fmt.Errorf("%q has a bad port", s)
		}
	}
	return nil
}

// requestPayload is the canonical JSON an X-Matrix signature covers: {content, destination,
// method, origin, uri} in key order, content only when the body is not empty. The body is
// canonicalised from its bytes, never decoded into a tree; objectOnly refuses other JSON values.
func requestPayload(method, uri, origin, destination string, content []byte, objectOnly bool) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(content) + len(uri) + 128)
	buf.WriteByte('{')
	if body := bytes.TrimLeft(content, " \t\r\n"); len(body) > 0 {
		if objectOnly && body[0] != '{' {
			return nil, fmt.Errorf("%w: it starts with %q", ErrMalformedContent, body[0])
		}
		buf.WriteString(`"content":`)
		if err := appendCanonical(&buf, content); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformedContent, err)
		}
		buf.WriteByte(',')
	}
	for i, kv := range [][2]string{{"destination", destination}, {"method", method}, {"origin", origin}, {"uri", uri}} {
		if i > 0 {
			buf.WriteByte(',')
		}
		writeCanonicalString(&buf, kv[0])
		buf.WriteByte(':')
		writeCanonicalString(&buf, kv[1])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// SignRequest makes the X-Matrix header for a request from id to destination; uri is the path and
// query exactly as sent, content the JSON body or nil.
func SignRequest(id *Identity, method, destination, uri string, content []byte) (XMatrix, error) {
	key := id.SigningKey()
	payload, err := requestPayload(method, uri, id.ServerName, destination, content, false)
	if err != nil {
		return XMatrix{}, err
	}
	sig := ed25519.Sign(key.PrivateKey(), payload)
	return XMatrix{Origin: id.ServerName, Destination: destination, Key: key.ID, Sig: EncodeBase64(sig)}, nil
}

// KeyLookup returns the public key of origin's key keyID, or an error wrapping ErrUnknownKey.
type KeyLookup func(origin string, keyID KeyID) (ed25519.PublicKey, error)

// Request is what an X-Matrix signature is checked over; URI is the raw request URI as received.
type Request struct {
	Method        string
	URI           string
	Content       []byte
	Authorization []string // every Authorization header value, in order
}

// RequestAuth is what a request's X-Matrix headers say, checked as far as that is possible
// without the body: parsed, one origin, addressed to us, and at least one key known.
type RequestAuth struct {
	origin      string
	destination string
	headers     []XMatrix
	keys        []ed25519.PublicKey // per header; nil where the key is unknown
}

// Origin is the origin the headers name; it is verified only once Verify succeeds.
func (a *RequestAuth) Origin() string { return a.origin }

// CheckRequestHeaders checks a request's Authorization headers as received by destination: every
// X-Matrix header parses, all name one origin, none names another destination, and lookup knows
// at least one of their keys. It reads no body, so a request that cannot verify is refused
// before its body is read.
func CheckRequestHeaders(authorization []string, destination string, lookup KeyLookup) (*RequestAuth, error) {
	a := &RequestAuth{destination: destination}
	for _, h := range authorization {
		if !IsXMatrix(h) {
			continue
		}
		x, err := ParseXMatrix(h)
		if err != nil {
			return nil, err
		}
		if len(a.headers) > 0 && x.Origin != a.headers[0].Origin {
			return nil, fmt.Errorf("%w: %w", ErrMalformedHeader, errConflictingOrigin)
		}
		if x.Destination != "" && x.Destination != destination {
			return nil, fmt.Errorf("%w: header names %q, this server is %q", ErrWrongDestination, x.Destination, destination)
		}
		a.headers = append(a.headers, x)
	}
	if len(a.headers) == 0 {
		return nil, ErrNoAuthorization
	}
	a.origin = a.headers[0].Origin
	known := 0
	var unknown error
	for _, x := range a.headers {
		pub, err := lookup(a.origin, x.Key)
		if err != nil {
			if errors.Is(err, ErrUnknownKey) {
				unknown = err
				a.keys = append(a.keys, nil)
				continue
			}
			return nil, err
		}
		a.keys = append(a.keys, pub)
		known++
	}
	if known == 0 {
		return nil, unknown
	}
	return a, nil
}

// Verify checks the signatures over the request: every header whose key is known must verify.
// content is the raw body (nil or empty when there is none); it returns the verified origin.
func (a *RequestAuth) Verify(method, uri string, content []byte) (string, error) {
	payload, err := requestPayload(method, uri, a.origin, a.destination, content, true)
	if err != nil {
		return "", err
	}
	for i, x := range a.headers {
		pub := a.keys[i]
		if pub == nil {
			continue
		}
		sig, _ := DecodeBase64(x.Sig) // checked by ParseXMatrix
		if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(pub, payload, sig) {
			return "", fmt.Errorf("%w: request signature by %s with %s", ErrBadSignature, a.origin, x.Key)
		}
	}
	return a.origin, nil
}

// VerifyRequest checks a request's X-Matrix headers as received by destination and returns the
// verified origin. All X-Matrix headers must name one origin; every one whose key is known must
// verify, and at least one must.
func VerifyRequest(r Request, destination string, lookup KeyLookup) (string, error) {
	a, err := CheckRequestHeaders(r.Authorization, destination, lookup)
	if err != nil {
		return "", err
	}
	return a.Verify(r.Method, r.URI, r.Content)
}

// VerifyHTTPRequest verifies req's X-Matrix authentication as received by destination: the
// headers first, then the body, read up to maxBody bytes and put back for the handler.
func VerifyHTTPRequest(req *http.Request, destination string, lookup KeyLookup, maxBody int64) (string, error) {
	a, err := CheckRequestHeaders(req.Header.Values("Authorization"), destination, lookup)
	if err != nil {
		return "", err
	}
	var body []byte
	if req.Body != nil {
		body, err = io.ReadAll(io.LimitReader(req.Body, maxBody+1))
		req.Body.Close()
		if err != nil {
			return "", fmt.Errorf("reading request body: %w", err)
		}
		if int64(len(body)) > maxBody {
			return "", fmt.Errorf("%w: request body over %d bytes", ErrMalformedContent, maxBody)
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	uri := req.RequestURI
	if uri == "" {
		uri = req.URL.RequestURI()
	}
	return a.Verify(req.Method, uri, body)
}

// Lookup returns a KeyLookup that knows only id's own current keys, as Synapse checks requests
// signed with its own name: old keys are expired and never accepted for requests.
func (id *Identity) Lookup() KeyLookup {
	return func(origin string, keyID KeyID) (ed25519.PublicKey, error) {
		if origin != id.ServerName {
			return nil, fmt.Errorf("%w: origin %q is not %q", ErrUnknownKey, origin, id.ServerName)
		}
		if pub, current, ok := id.PublicKey(keyID); ok && current {
			return pub, nil
		}
		return nil, fmt.Errorf("%w: %s has no current key %s", ErrUnknownKey, origin, keyID)
	}
}
