package logship

import (
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/assetcdn/objectstore"
)

func TestKeyTemplate(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890e6, time.UTC)
	v := keyValues{Prefix: "logs/prod", Host: "lb-1", Name: "access", UUID: "0b1c", Time: at}
	tests := []struct {
		tmpl, host, want, wantErr string
		noPrefix                  bool
	}{
		{tmpl: DefaultKey, want: "logs/prod/lb-1/2026/03/04/05/access-20260304T050607.890Z-0b1c.log.gz"},
		{tmpl: DefaultKey, noPrefix: true, want: "lb-1/2026/03/04/05/access-20260304T050607.890Z-0b1c.log.gz"},
		{tmpl: "{prefix}/{host}/{ts}-{uuid}", host: "a/../b", want: "logs/prod/a_.._b/20260304T050607.890Z-0b1c"},
		{tmpl: "date={yyyy}-{mm}-{dd}/{HH}{MM}/{ts}-{uuid}.gz", want: "date=2026-03-04/0506/20260304T050607.890Z-0b1c.gz"},
		{tmpl: "{prefix}/{uuid}.gz", wantErr: "must contain {ts} and {uuid}"},
		{tmpl: "{ts}/{nope}/{uuid}", wantErr: "unknown placeholder {nope}"},
		{tmpl: "{ts}/{uuid", wantErr: "unclosed"},
		{tmpl: "../{ts}-{uuid}", wantErr: "invalid object key"},
	}
	for _, tc := range tests {
		vv := v
		if tc.noPrefix {
			vv.Prefix = ""
		}
		if tc.host != "" {
			vv.Host = tc.host
		}
		kt, err := parseKeyTemplate(tc.tmpl)
		var got string
		if err == nil {
			got, err = kt.render(vv)
		}
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: err %v, want %q", tc.tmpl, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q, %v; want %q", tc.tmpl, got, err, tc.want)
		}
	}
}

// FuzzKeyTemplate: a template that parses renders either an error or a
// key the stores accept, whatever the host and log names are.
func FuzzKeyTemplate(f *testing.F) {
	f.Add(DefaultKey, "lb-1", "access")
	f.Add("{prefix}/{host}/{ts}-{uuid}", "a/../b", "x\x00y")
	f.Add("{ts}{uuid}", "", "")
	f.Fuzz(func(t *testing.T, tmpl, host, name string) {
		kt, err := parseKeyTemplate(tmpl)
		if err != nil {
			return
		}
		uuid := objectstore.NewUUID()
		key, err := kt.render(keyValues{Prefix: "logs", Host: host, Name: name, UUID: uuid, Time: time.Now()})
		if err != nil {
			return
		}
		if err := objectstore.ValidateKey(key); err != nil {
			t.Fatalf("rendered key %q is invalid: %v", key, err)
		}
		if !strings.Contains(key, uuid) {
			t.Fatalf("key %q lost the spool file's uuid %s", key, uuid)
		}
	})
}
