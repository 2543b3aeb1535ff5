package reloadwarn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReloadResetWarning(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		warn          bool
	}{
		{"off", "0\n", true},
		{"on", "1\n", false},
		{"off without newline", "0", true},
		{"unexpected value", "2\n", false},
		{"missing", "", false},
	} {
		path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if tc.name != "missing" {
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		msg := reloadResetWarning(path)
		if (msg != "") != tc.warn {
			t.Errorf("%s: warning %q, want one: %v", tc.name, msg, tc.warn)
		}
		if tc.warn && !strings.Contains(msg, "tcp_migrate_req=1") {
			t.Errorf("%s: warning %q does not say what to set", tc.name, msg)
		}
	}
}
