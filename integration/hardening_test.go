package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddylb/caddylb/integration/harness"
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
