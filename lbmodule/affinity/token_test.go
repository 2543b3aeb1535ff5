package affinity

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTripAndRotation(t *testing.T) {
	oldKey := []byte("old-secret-0123456789")
	newKey := []byte("new-secret-9876543210")
	oldSigner := newSigner("lb_affinity", [][]byte{oldKey})
	rotated := newSigner("lb_affinity", [][]byte{newKey, oldKey})
	other := newSigner("lb_affinity", [][]byte{[]byte("unrelated-secret-xxxxxx")})
	otherName := newSigner("other_cookie", [][]byte{oldKey})

	id := newSessionID()
	issued := time.Unix(1_790_000_000, 0)
	value := oldSigner.issue(id, "10.0.0.1:8080", issued, flagRecorded)

	if len(value) != tokenLen {
		t.Fatalf("token length %d, want %d", len(value), tokenLen)
	}
	if strings.Contains(value, "10.0.0.1") {
		t.Fatalf("token reveals the upstream address: %s", value)
	}

	tok, err := rotated.verify(value)
	if err != nil {
		t.Fatalf("rotated signer rejects a token of the previous secret: %v", err)
	}
	if tok.secret != 1 || tok.sessionID != id || !tok.issued.Equal(issued) || tok.flags != flagRecorded {
		t.Fatalf("decoded %+v", tok)
	}
	if tok.tag != rotated.upstreamTag(1, "10.0.0.1:8080") {
		t.Fatal("upstream tag does not match under the verifying secret")
	}
	if tok.tag == rotated.upstreamTag(1, "10.0.0.2:8080") {
		t.Fatal("two upstreams share a tag")
	}
	if _, err := other.verify(value); err != errTokenMAC {
		t.Fatalf("foreign secret: got %v, want errTokenMAC", err)
	}
	if _, err := otherName.verify(value); err != errTokenMAC {
		t.Fatalf("same secret, other cookie name: got %v, want errTokenMAC", err)
	}
}

func TestTokenVerifyRejects(t *testing.T) {
	s := newSigner("lb", [][]byte{[]byte("0123456789abcdef0123")})
	good := s.issue(newSessionID(), "a:1", time.Now(), 0)
	raw, _ := base64.RawURLEncoding.DecodeString(good)
	flip := func(i int) string {
		b := append([]byte(nil), raw...)
		b[i] ^= 0x01
		return base64.RawURLEncoding.EncodeToString(b)
	}
	wrongVersion := append([]byte(nil), raw...)
	wrongVersion[0] = 9

	tests := []struct {
		name  string
		value string
		want  error
	}{
		{"empty", "", errTokenLength},
		{"short", good[:len(good)-1], errTokenLength},
		{"long", good + "A", errTokenLength},
		{"oversized", strings.Repeat("A", 4096), errTokenLength},
		{"not base64", strings.Repeat("*", tokenLen), errTokenEncode},
		{"padding chars", good[:tokenLen-1] + "=", errTokenEncode},
		{"version", base64.RawURLEncoding.EncodeToString(wrongVersion), errTokenVersion},
		{"session id flipped", flip(3), errTokenMAC},
		{"tag flipped", flip(1 + sessionIDLen + 2), errTokenMAC},
		{"issued flipped", flip(1 + sessionIDLen + upstreamTagLen + 1), errTokenMAC},
		{"flags flipped", flip(tokenRawLen - tokenMACLen - 1), errTokenMAC},
		{"mac flipped", flip(tokenRawLen - 1), errTokenMAC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.verify(tt.value); err != tt.want {
				t.Fatalf("verify(%q) = %v, want %v", tt.value, err, tt.want)
			}
		})
	}
	if _, err := s.verify(good); err != nil {
		t.Fatalf("good token rejected: %v", err)
	}
}

func FuzzTokenVerify(f *testing.F) {
	s := newSigner("lb", [][]byte{[]byte("0123456789abcdef0123")})
	f.Add(s.issue(newSessionID(), "a:1", time.Now(), 0))
	f.Add("")
	f.Add(strings.Repeat("A", tokenLen))
	f.Add("\x00\xff")
	f.Fuzz(func(t *testing.T, value string) {
		tok, err := s.verify(value)
		if err != nil {
			return
		}
		// Whatever verifies must re-issue to exactly the same bytes:
		// nothing but a token this signer made can pass.
		again := s.issue(tok.sessionID, "", tok.issued, tok.flags)
		tok2, _ := s.verify(again)
		if tok2.sessionID != tok.sessionID || tok2.flags != tok.flags {
			t.Fatalf("round trip changed the token")
		}
		if tok.secret != 0 {
			t.Fatalf("secret index %d with one secret", tok.secret)
		}
	})
}
