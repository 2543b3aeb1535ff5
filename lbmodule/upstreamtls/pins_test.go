package upstreamtls

import (
	"strings"
	"testing"
)

func TestParsePin(t *testing.T) {
	const valid = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	tests := []struct {
		in, wantErr string
	}{
		{valid, ""},
		{"sha256/" + valid, ""},
		{strings.TrimRight(valid, "="), ""},
		{"", "32 bytes"},
		{"not base64!", "not base64"},
		{"AAAA", "3 bytes"},
		{valid + valid, "too long"},
		{"sha1/" + valid, "not base64"},
	}
	for _, tt := range tests {
		pin, err := parsePin(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("parsePin(%q): %v", tt.in, err)
			} else if pin[0] != 0xe3 {
				t.Errorf("parsePin(%q) decoded %x", tt.in, pin)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("parsePin(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
		}
	}
}

// FuzzParsePin: any text is a pin of 32 bytes or an error naming it,
// never a panic; a pin printed back parses to itself.
func FuzzParsePin(f *testing.F) {
	for _, seed := range []string{"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "sha256/", "====", "\x00", strings.Repeat("A", 70)} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		pin, err := parsePin(text)
		if err != nil {
			if !strings.Contains(err.Error(), "pin_spki") {
				t.Fatalf("error %q does not name the option", err)
			}
			return
		}
		again, err := parsePin(encodePin(pin))
		if err != nil || again != pin {
			t.Fatalf("%q parsed to %x, which does not round-trip: %v", text, pin, err)
		}
	})
}
