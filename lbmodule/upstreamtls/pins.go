package upstreamtls

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"strings"
)

// spkiPin is the SHA-256 of a certificate's DER SubjectPublicKeyInfo, the
// value HPKP (RFC 7469 section 2.4) and `openssl pkey -pubout | openssl
// dgst -sha256 -binary | base64` compute.
type spkiPin [sha256.Size]byte

// maxPinLen bounds the text of one pin; a base64 SHA-256 is 44 characters,
// with the optional "sha256/" prefix 51.
const maxPinLen = 64

// parsePin reads one pin: standard base64 of 32 bytes, with or without
// padding, optionally prefixed by "sha256/" as in RFC 7469 headers.
func parsePin(text string) (spkiPin, error) {
	var pin spkiPin
	if len(text) > maxPinLen {
		return pin, fmt.Errorf("pin_spki %.20q...: too long for a base64 SHA-256", text)
	}
	b64 := strings.TrimPrefix(text, "sha256/")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		raw, err = base64.RawStdEncoding.DecodeString(b64)
	}
	if err != nil {
		return pin, fmt.Errorf("pin_spki %q: not base64: %v", text, err)
	}
	if len(raw) != sha256.Size {
		return pin, fmt.Errorf("pin_spki %q: %d bytes, want a SHA-256 (32 bytes)", text, len(raw))
	}
	copy(pin[:], raw)
	return pin, nil
}

// parsePins parses every pin, naming the first bad one.
func parsePins(texts []string) ([]spkiPin, error) {
	pins := make([]spkiPin, 0, len(texts))
	for _, text := range texts {
		pin, err := parsePin(text)
		if err != nil {
			return nil, err
		}
		pins = append(pins, pin)
	}
	return pins, nil
}

// PinOf is the pin_spki value of cert: base64 SHA-256 of its public key.
func PinOf(cert *x509.Certificate) string {
	return encodePin(sha256.Sum256(cert.RawSubjectPublicKeyInfo))
}

// matchesAnyPin reports whether cert's public key is one of pins.
func matchesAnyPin(cert *x509.Certificate, pins []spkiPin) bool {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	for _, pin := range pins {
		if subtle.ConstantTimeCompare(sum[:], pin[:]) == 1 {
			return true
		}
	}
	return false
}

func encodePin(pin spkiPin) string {
	return base64.StdEncoding.EncodeToString(pin[:])
}
