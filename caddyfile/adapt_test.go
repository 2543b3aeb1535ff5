package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddylb/caddylb"
)

var update = flag.Bool("update", false, "rewrite the JSON half of testdata/*.caddytest from the adapter's output")

// TestAdapt checks that every testdata/*.caddytest file, a Caddyfile and
// the JSON it must adapt to separated by a line of dashes, still adapts to
// exactly that JSON. They show the whole Caddyfile surface at a glance.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/*.caddytest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfileText, wantJSON, ok := strings.Cut(string(raw), "\n----------\n")
			if !ok && *update {
				caddyfileText = strings.TrimRight(string(raw), "\n") + "\n"
			} else if !ok {
				t.Fatalf("%s: no ---------- line between Caddyfile and JSON", file)
			}
			got := adapt(t, strings.TrimRight(caddyfileText, "\n")+"\n")
			if *update {
				if err := os.WriteFile(file, []byte(strings.TrimRight(caddyfileText, "\n")+"\n----------\n"+got+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if strings.TrimSpace(got) != strings.TrimSpace(wantJSON) {
				t.Fatalf("%s adapts to\n%s\nwant\n%s", file, got, wantJSON)
			}
		})
	}
}

func adapt(t *testing.T, text string) string {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapter warning: line %d: %s", w.Line, w.Message)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, out, "", "\t"); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// TestAdaptErrors checks that bad configuration is refused with a message
// naming the problem.
func TestAdaptErrors(t *testing.T) {
	tests := []struct {
		name, caddyfile, want string
	}{
		{"store without backend", "{\n\tsession_store shared\n}\n:80\n", "needs a backend"},
		{"store without name", "{\n\tsession_store\n}\n:80\n", "needs a name and a backend"},
		{"unknown backend", "{\n\tsession_store shared etcd\n}\n:80\n", "session_store.backends.etcd"},
		{"store twice", "{\n\tsession_store a memory\n\tsession_store a memory\n}\n:80\n", "declared twice"},
		{"memory takes no args", "{\n\tsession_store a memory 1\n}\n:80\n", "wrong argument count"},
		{"unknown sticky option", ":80 {\n\treverse_proxy a:1 {\n\t\tlb_policy sticky {\n\t\t\tcookies x\n\t\t}\n\t}\n}\n", `unrecognized lb_policy sticky option "cookies"`},
		{"sticky inline arg", ":80 {\n\treverse_proxy a:1 {\n\t\tlb_policy sticky lb\n\t}\n}\n", "in a block"},
		{"bad ttl", ":80 {\n\treverse_proxy a:1 {\n\t\tlb_policy sticky {\n\t\t\tttl soon\n\t\t}\n\t}\n}\n", `ttl: "soon" is not a positive duration`},
		{"cookie two args", ":80 {\n\treverse_proxy a:1 {\n\t\tlb_policy sticky {\n\t\t\tcookie a b\n\t\t}\n\t}\n}\n", "takes one argument"},
		{"reencrypt to http://", ":80 {\n\treverse_proxy http://a:1 {\n\t\ttransport reencrypt\n\t}\n}\n", "scheme is HTTP"},
		{"reencrypt bad pin", ":80 {\n\treverse_proxy a:1 {\n\t\ttransport reencrypt {\n\t\t\tpin_spki abc\n\t\t}\n\t}\n}\n", `pin_spki "abc"`},
		{"sticky_learn args", ":80 {\n\tsticky_learn now\n\treverse_proxy a:1\n}\n", "wrong argument count"},
		{"ship_logs without files", "{\n\tship_logs {\n\t\tname app\n\t}\n}\n", "files is required"},
		{"ship_logs unknown option", "{\n\tship_logs {\n\t\tfiles /x\n\t\tglob y\n\t}\n}\n", `unknown s3 log writer option "glob"`},
		{"ship_logs bad max_line", "{\n\tship_logs {\n\t\tfiles /x\n\t\tmax_line lots\n\t}\n}\n", "max_line"},
		{"ship_logs two values", "{\n\tship_logs {\n\t\tfiles /x\n\t\tname a b\n\t}\n}\n", "one value expected"},
		{"ship_logs inline arg", "{\n\tship_logs app {\n\t\tfiles /x\n\t}\n}\n", "wrong argument count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(tt.caddyfile), nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}
