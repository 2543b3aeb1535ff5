package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// Regression tests, through the built binary, for what issue 10 found
// when caddy-lb was attacked and run from outside.

// twoSitesOneLearns has one site that learns app sessions and one that
// forgot to.
const twoSitesOneLearns = `{
	admin off
	skip_install_trust
}
http://learns.test {
	sticky_learn
	reverse_proxy 127.0.0.1:9001 {
		lb_policy sticky {
			app_cookie PHPSESSID
		}
	}
}
http://forgot.test {
	reverse_proxy 127.0.0.1:9002 {
		lb_policy sticky {
			app_cookie PHPSESSID
			namespace forgot
		}
	}
}
`

// TestValidateRefusesTheSiteWithoutStickyLearnEveryTime: `caddy validate`
// once accepted this config in 14-17 runs of 20, depending on which server
// Caddy provisioned first; the second site's users were then logged out
// right after logging in.
func TestValidateRefusesTheSiteWithoutStickyLearnEveryTime(t *testing.T) {
	bin := harness.CaddyBinary(t)
	path := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(path, []byte(twoSitesOneLearns), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		cmd := exec.Command(bin, "validate", "--config", path, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_DATA_HOME="+t.TempDir(), "XDG_CONFIG_HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("run %d: caddy validate accepted a site with app_cookie and no sticky_learn", i+1)
		}
		if !strings.Contains(string(out), "in site forgot.test") || !strings.Contains(string(out), "sticky_learn") {
			t.Fatalf("run %d: the error does not name the site and the fix:\n%s", i+1, out)
		}
	}
}

// learnAroundHandle learns app sessions from a proxy inside a handle
// block: sticky_learn is ordered before handle, so a site-level line
// covers it (ordered after handle, it never ran for those requests).
const learnAroundHandle = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	sticky_learn
	handle /static/* {
		respond "static"
	}
	handle {
		reverse_proxy {{.X.upstreams}} {
			lb_policy sticky {
				app_cookie PHPSESSID
			}
		}
	}
}
`

func TestSiteLevelStickyLearnCoversAProxyInAHandleBlock(t *testing.T) {
	backends := harness.StartBackends(t, 3)
	c := harness.StartCaddyWith(t, learnAroundHandle, map[string]any{"upstreams": harness.Upstreams(backends)})
	for id := range 6 {
		u := newUser("app", id)
		login := u.mustDo(t, c, "/login")
		if login.status != 200 || login.backend == "" {
			t.Fatalf("user %d: login: %d %q", id, login.status, login.body)
		}
		for range 4 {
			a := u.mustDo(t, c, "/whoami")
			if a.backend != login.backend || !a.known {
				t.Fatalf("user %d logged in on %s, then reached %s (known %v): the session was not learned", id, login.backend, a.backend, a.known)
			}
		}
	}
}

// rawExchange sends raw bytes to addr, as an attacker would, and reads
// the whole answer (the connection is closed by the request, or by the
// server after a refusal).
func rawExchange(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp
}

// offloadToPHP stores uploads in a file store and passes the rest to a
// real PHP application.
const offloadToPHP = `{
	{{.Global}}
	asset_store media file {{.X.root}}
}
:{{.HTTPPort}} {
	asset_offload /upload* {
		store media
		max_size 1KiB
		allow_types image/*
		sign_secret {{.X.secret}}
	}
	reverse_proxy {{.X.php}}
}
`

// phpView is what the PHP application parsed from a request.
type phpView struct {
	Method string
	Files  json.RawMessage
	Post   json.RawMessage // an object, or [] when empty (PHP's json_encode)
}

// TestUploadsCannotBypassOffloadToPHP sends uploads that PHP reads as
// multipart in spellings Go's mime package refuses, on every method, and
// with a second Content-Encoding line. PHP must never see a file (once it
// received an over-size shell.php of the wrong type, and the client's
// forged [signature] field); each is offloaded or refused with a message
// that names the problem.
func TestUploadsCannotBypassOffloadToPHP(t *testing.T) {
	php := testproc.StartPHP(t)
	c := harness.StartCaddyWith(t, offloadToPHP, map[string]any{
		"root": t.TempDir(), "php": php.Addr, "secret": uploadSecret,
	})
	const boundary = "XyZb0undary"
	body := "--" + boundary + "\r\n" +
		"Content-Disposition: form-data; name=\"avatar\"; filename=\"shell.php\"\r\n" +
		"Content-Type: image/png\r\n\r\n" +
		"<?php system($_GET['c']); ?>" + strings.Repeat("A", 2048) + "\r\n" +
		"--" + boundary + "\r\n" +
		"Content-Disposition: form-data; name=\"avatar[signature]\"\r\n\r\nforged\r\n" +
		"--" + boundary + "--\r\n"
	small := strings.Replace(body, strings.Repeat("A", 2048), "", 1)
	for _, tc := range []struct {
		name, method, headers, body string
		status                      int
		msg                         string
	}{
		{"comma, another type", "POST", "Content-Type: multipart/form-data, text/plain; boundary=" + boundary, body, 400, "does not parse"},
		{"no semicolon", "POST", "Content-Type: multipart/form-data boundary=" + boundary, body, 400, "does not parse"},
		{"comma semicolon", "POST", "Content-Type: multipart/form-data,; boundary=" + boundary, body, 400, "does not parse"},
		{"two Content-Type lines", "POST", "Content-Type: text/plain\r\nContent-Type: multipart/form-data; boundary=" + boundary, body, 400, "Content-Type lines"},
		{"identity then gzip", "POST", "Content-Type: multipart/form-data; boundary=" + boundary + "\r\nContent-Encoding: identity\r\nContent-Encoding: gzip", body, 415, "gzip"},
		{"over-size file", "POST", "Content-Type: multipart/form-data; boundary=" + boundary, strings.Replace(body, "<?php", "\x89PNG\r\n\x1a\n<?php", 1), 413, "larger than"},
		{"php code typed as an image", "POST", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"DELETE with multipart", "DELETE", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"OPTIONS with multipart", "OPTIONS", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
		{"lower-case post", "post", "Content-Type: multipart/form-data; boundary=" + boundary, small, 415, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.method + " /upload HTTP/1.1\r\nHost: app.test\r\n" + tc.headers +
				"\r\nContent-Length: " + strconv.Itoa(len(tc.body)) + "\r\nConnection: close\r\n\r\n" + tc.body
			resp := rawExchange(t, "127.0.0.1:"+strconv.Itoa(c.HTTPPort), raw)
			got, _ := io.ReadAll(resp.Body)
			if resp.StatusCode == http.StatusOK {
				var v phpView
				_ = json.Unmarshal(got, &v)
				t.Fatalf("PHP received the request (files %s, post %s)", v.Files, v.Post)
			}
			if resp.StatusCode != tc.status || !strings.Contains(string(got), tc.msg) {
				t.Fatalf("%d %s; want %d naming %q", resp.StatusCode, got, tc.status, tc.msg)
			}
		})
	}

	// An allowed image on DELETE is offloaded: PHP gets no file, only
	// the signed reference, and never the forged signature.
	png := "\x89PNG\r\n\x1a\n" + strings.Repeat("\x07", 64)
	img := strings.Replace(small, "<?php system($_GET['c']); ?>", png, 1)
	for _, method := range []string{"POST", "DELETE"} {
		raw := method + " /upload HTTP/1.1\r\nHost: app.test\r\nContent-Type: multipart/form-data; boundary=" + boundary +
			"\r\nContent-Length: " + strconv.Itoa(len(img)) + "\r\nConnection: close\r\n\r\n" + img
		resp := rawExchange(t, "127.0.0.1:"+strconv.Itoa(c.HTTPPort), raw)
		got, _ := io.ReadAll(resp.Body)
		var v phpView
		if err := json.Unmarshal(got, &v); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, got)
		}
		if string(v.Files) != "[]" {
			t.Fatalf("%s: PHP received files %s", method, v.Files)
		}
		if method == "POST" { // PHP 8.2 parses a body into $_POST only for POST
			var post struct{ Avatar map[string]string }
			_ = json.Unmarshal(v.Post, &post)
			if post.Avatar["key"] == "" || post.Avatar["signature"] == "forged" {
				t.Fatalf("%s: PHP's $_POST %s: want the signed reference, not the forged one", method, v.Post)
			}
		}
	}
}
