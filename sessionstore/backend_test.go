package sessionstore

import (
	"strings"
	"testing"
	"time"
)

func TestDecodeBinding(t *testing.T) {
	for _, tc := range []struct {
		in       string
		upstream string
		ms       int64
		wantErr  string
	}{
		{in: "1700000000000|10.0.0.1:8080", upstream: "10.0.0.1:8080", ms: 1700000000000},
		{in: "1|a", upstream: "a", ms: 1},
		{in: "1700000000000|unix//run/app.sock", upstream: "unix//run/app.sock", ms: 1700000000000},
		{in: "1700000000000|a|b", upstream: "a|b", ms: 1700000000000}, // only the first | splits
		{in: "1700000000000|[::1]:80", upstream: "[::1]:80", ms: 1700000000000},

		{in: "", wantErr: "malformed binding"},
		{in: "1700000000000", wantErr: "malformed binding"},
		{in: "1700000000000|", wantErr: "malformed binding"},
		{in: "|10.0.0.1:80", wantErr: "malformed binding expiry"},
		{in: "soon|10.0.0.1:80", wantErr: "malformed binding expiry"},
		{in: "0|10.0.0.1:80", wantErr: "malformed binding expiry"},
		{in: "-5|10.0.0.1:80", wantErr: "malformed binding expiry"},
		{in: "99999999999999999999|a", wantErr: "malformed binding expiry"}, // overflows int64
		{in: strings.Repeat("x", 1000), wantErr: "..."},                     // long input is cut in the message
	} {
		b, err := DecodeBinding(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("DecodeBinding(%.40q) = %+v, %v; want error containing %q", tc.in, b, err, tc.wantErr)
			}
			if err != nil && len(err.Error()) > 120 {
				t.Errorf("DecodeBinding(%.40q): error of %d bytes repeats the input", tc.in, len(err.Error()))
			}
			continue
		}
		if err != nil {
			t.Errorf("DecodeBinding(%q): %v", tc.in, err)
			continue
		}
		if b.Upstream != tc.upstream || b.Expires.UnixMilli() != tc.ms {
			t.Errorf("DecodeBinding(%q) = %+v, want %s until %d", tc.in, b, tc.upstream, tc.ms)
		}
		if again := EncodeBinding(b); again != tc.in {
			t.Errorf("EncodeBinding(DecodeBinding(%q)) = %q", tc.in, again)
		}
	}
}

// FuzzDecodeBinding feeds DecodeBinding arbitrary values, as a store shared
// with other software may hold: it must not panic, and whatever it accepts
// must encode back to a value that decodes to the same binding.
func FuzzDecodeBinding(f *testing.F) {
	for _, seed := range []string{"1700000000000|10.0.0.1:8080", "1|a", "", "|", "0|x", "+5|x", "5|a|b", "9223372036854775807|x", "1|\x00"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		b, err := DecodeBinding(in)
		if err != nil {
			// The input is cut to 64 bytes; %q may quadruple each.
			if len(err.Error()) > 300 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if b.Upstream == "" || b.Expires.UnixMilli() <= 0 {
			t.Fatalf("DecodeBinding(%q) accepted %+v", in, b)
		}
		again, err := DecodeBinding(EncodeBinding(b))
		if err != nil {
			t.Fatalf("re-decoding %q: %v", EncodeBinding(b), err)
		}
		if again.Upstream != b.Upstream || !again.Expires.Equal(b.Expires) {
			t.Fatalf("round trip of %q: %+v != %+v", in, again, b)
		}
		_ = b.Live(time.Now())
	})
}
