package affinity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash"
	"sync"
	"time"
)

// The LB cookie carries an opaque, signed token. Layout before base64url:
//
//	version(1) | session id(16) | upstream tag(8) | issued unix s(4) | flags(1) | mac(16)
//
// The upstream tag is HMAC(secret, "upstream\x00"+dial) cut to 8 bytes, so
// the cookie never reveals an address and cannot be made to point at one
// without the secret. The MAC covers the cookie name and every other byte,
// so a token cannot be replayed under another policy's cookie. Tokens are
// fixed-size: anything of another length is rejected before any hashing.
const (
	tokenVersion   = 1
	sessionIDLen   = 16
	upstreamTagLen = 8
	tokenMACLen    = 16
	tokenRawLen    = 1 + sessionIDLen + upstreamTagLen + 4 + 1 + tokenMACLen
	tokenLen       = (tokenRawLen*8 + 5) / 6 // unpadded base64url

	// flagRecorded says the session has been written to the store. A new
	// token starts without it; the first request that brings the cookie
	// back records the session, so clients that never return a cookie
	// (bots, health probes, load generators) cost the store nothing.
	flagRecorded = 1 << 0
)

var (
	errTokenLength  = errors.New("token has the wrong length")
	errTokenEncode  = errors.New("token is not base64url")
	errTokenVersion = errors.New("token has an unknown version")
	errTokenMAC     = errors.New("token signature does not verify")
	errTokenExpired = errors.New("token is older than token_max_age")
)

// lbToken is a decoded, verified LB cookie.
type lbToken struct {
	sessionID [sessionIDLen]byte
	tag       [upstreamTagLen]byte
	issued    time.Time
	flags     byte
	secret    int // index of the secret that verified it; 0 is the current one
}

// signer signs and verifies tokens and upstream tags with a list of
// secrets: the first signs, every one verifies, so secrets can be rotated
// by putting the new one first and keeping the old one until its cookies
// are gone.
type signer struct {
	cookieName string
	secrets    [][]byte
	hmacs      []sync.Pool // one pool of hash.Hash per secret
	tags       sync.Map    // dial -> [][upstreamTagLen]byte, one tag per secret
	tagCount   int64
	tagMu      sync.Mutex
}

const maxCachedTags = 4096

func newSigner(cookieName string, secrets [][]byte) *signer {
	s := &signer{cookieName: cookieName, secrets: secrets, hmacs: make([]sync.Pool, len(secrets))}
	for i, secret := range secrets {
		s.hmacs[i].New = func() any { return hmac.New(sha256.New, secret) }
	}
	return s
}

func (s *signer) mac(secret int, parts ...[]byte) []byte {
	h := s.hmacs[secret].Get().(hash.Hash)
	h.Reset()
	for _, p := range parts {
		h.Write(p)
	}
	sum := h.Sum(make([]byte, 0, sha256.Size))
	s.hmacs[secret].Put(h)
	return sum
}

// upstreamTag returns the opaque tag of dial under the given secret.
func (s *signer) upstreamTag(secret int, dial string) [upstreamTagLen]byte {
	if v, ok := s.tags.Load(dial); ok {
		return v.([][upstreamTagLen]byte)[secret]
	}
	tags := make([][upstreamTagLen]byte, len(s.secrets))
	for i := range s.secrets {
		copy(tags[i][:], s.mac(i, []byte("upstream\x00"), []byte(dial)))
	}
	// Dynamic upstreams could grow the cache without bound; start over
	// past a limit no static config reaches.
	s.tagMu.Lock()
	if s.tagCount >= maxCachedTags {
		s.tags.Clear()
		s.tagCount = 0
	}
	s.tagCount++
	s.tagMu.Unlock()
	s.tags.Store(dial, tags)
	return tags[secret]
}

// issue makes a token for a session bound to dial, signed with the current secret.
func (s *signer) issue(sessionID [sessionIDLen]byte, dial string, issued time.Time, flags byte) string {
	var raw [tokenRawLen]byte
	raw[0] = tokenVersion
	n := 1
	n += copy(raw[n:], sessionID[:])
	tag := s.upstreamTag(0, dial)
	n += copy(raw[n:], tag[:])
	binary.BigEndian.PutUint32(raw[n:], uint32(issued.Unix()))
	n += 4
	raw[n] = flags
	n++
	copy(raw[n:], s.mac(0, []byte(s.cookieName), []byte{0}, raw[:n]))
	return base64.RawURLEncoding.EncodeToString(raw[:])
}

// verify decodes and authenticates a token from a client.
func (s *signer) verify(value string) (lbToken, error) {
	var t lbToken
	if len(value) != tokenLen {
		return t, errTokenLength
	}
	var raw [tokenRawLen]byte
	if n, err := base64.RawURLEncoding.Decode(raw[:], []byte(value)); err != nil || n != tokenRawLen {
		return t, errTokenEncode
	}
	if raw[0] != tokenVersion {
		return t, errTokenVersion
	}
	body, sig := raw[:tokenRawLen-tokenMACLen], raw[tokenRawLen-tokenMACLen:]
	t.secret = -1
	for i := range s.secrets {
		if hmac.Equal(s.mac(i, []byte(s.cookieName), []byte{0}, body)[:tokenMACLen], sig) {
			t.secret = i
			break
		}
	}
	if t.secret < 0 {
		return t, errTokenMAC
	}
	n := 1
	n += copy(t.sessionID[:], body[n:])
	n += copy(t.tag[:], body[n:])
	t.issued = time.Unix(int64(binary.BigEndian.Uint32(body[n:])), 0)
	t.flags = body[n+4]
	return t, nil
}

// newSessionID returns 128 random bits.
func newSessionID() [sessionIDLen]byte {
	var id [sessionIDLen]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand documents it)
	return id
}
