package integration

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// Regression tests, through the built binary, for session affinity
// defects found by attacking caddy-lb from outside and running it as
// users run it.

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

// redisMonitor records the commands clients send to a Redis server
// (MONITOR), not those its scripts run, nor connection handshakes.
type redisMonitor struct {
	cmd *exec.Cmd
	out *bytes.Buffer
}

func monitorRedis(t *testing.T, addr string) *redisMonitor {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	m := &redisMonitor{cmd: exec.Command("redis-cli", "-h", host, "-p", port, "MONITOR"), out: new(bytes.Buffer)}
	m.cmd.Stdout = m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("redis-cli MONITOR: %v", err)
	}
	t.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait() })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(m.out.String(), "OK") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return m
}

// stop ends the monitor and returns the clients' commands.
func (m *redisMonitor) stop() []string {
	time.Sleep(100 * time.Millisecond) // the last commands reach the monitor
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	var cmds []string
	for line := range strings.SplitSeq(m.out.String(), "\n") {
		// 1796162769.555 [0 127.0.0.1:53328] "EVALSHA" ...; scripts' own are [0 lua]
		_, rest, ok := strings.Cut(line, " [")
		if !ok || strings.HasPrefix(rest, "0 lua]") {
			continue
		}
		_, cmd, ok := strings.Cut(rest, "] ")
		// A (re)connecting client's handshake is not the request path's.
		if ok && !strings.HasPrefix(cmd, `"HELLO"`) && !strings.HasPrefix(cmd, `"CLIENT"`) && !strings.HasPrefix(cmd, `"PING"`) {
			cmds = append(cmds, cmd)
		}
	}
	return cmds
}

// cookieValue returns the value of the first Set-Cookie for name.
func cookieValue(resp *http.Response, name string) string {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// doWithCookies sends GET path through node with exactly these Cookie
// header lines, as a client without a cookie jar does.
func doWithCookies(t *testing.T, node *harness.Caddy, path string, cookies ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, node.URL(path), nil)
	req.Host = "cookie.test"
	for _, c := range cookies {
		req.Header.Add("Cookie", c)
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestReplayedLBCookieCostsRedisAlmostNothing: a client without a cookie
// jar replays the first LB cookie it got, 200 times through two nodes on
// one Redis. That once cost 1,800 Redis commands and a new Set-Cookie on
// every request.
func TestReplayedLBCookieCostsRedisAlmostNothing(t *testing.T) {
	redis := testproc.StartRedis(t)
	c := startCluster(t, "redis {\n\t\taddress "+redis.Addr+"\n\t}", 2, "rebind")
	first := doWithCookies(t, c.nodes[0], "/whoami")
	cookie := "lb_affinity=" + cookieValue(first, "lb_affinity")
	backend := first.Header.Get("X-Backend")
	time.Sleep(300 * time.Millisecond) // let the clients' background commands settle
	mon := monitorRedis(t, redis.Addr)
	reissued := 0
	for i := range 200 {
		resp := doWithCookies(t, c.nodes[i%2], "/whoami", cookie)
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != backend {
			t.Fatalf("replay %d: %d from %s, want %s", i, resp.StatusCode, resp.Header.Get("X-Backend"), backend)
		}
		if cookieValue(resp, "lb_affinity") != "" {
			reissued++
		}
	}
	cmds := mon.stop()
	used := len(cmds)
	if reissued != 1 {
		t.Errorf("%d of 200 replays got a new cookie, want 1", reissued)
	}
	if used > 4 { // one per node, each maybe with a script load (EVALSHA answered NOSCRIPT, then EVAL)
		t.Errorf("200 replays cost %d Redis commands, want a few; the first: %q", used, cmds[:min(3, len(cmds))])
	}
	t.Logf("200 replays through two nodes: %d Redis commands, %d re-issues", used, reissued)
}

// TestDuplicateLBCookieFromASiblingIsSkipped: a cookie planted by a
// sibling subdomain comes first; the one that verifies is used, and the
// session is not restarted.
func TestDuplicateLBCookieFromASiblingIsSkipped(t *testing.T) {
	c := startCluster(t, "memory", 1, "rebind")
	first := doWithCookies(t, c.nodes[0], "/whoami")
	bound := first.Header.Get("X-Backend")
	// Its first return records the session and re-issues the cookie.
	mine := cookieValue(doWithCookies(t, c.nodes[0], "/whoami", "lb_affinity="+cookieValue(first, "lb_affinity")), "lb_affinity")
	if mine == "" {
		t.Fatal("the first return got no recorded cookie")
	}
	for _, planted := range []string{"lb_affinity=forged", "lb_affinity=" + strings.Repeat("A", len(mine))} {
		resp := doWithCookies(t, c.nodes[0], "/whoami", planted+"; lb_affinity="+mine)
		if resp.Header.Get("X-Backend") != bound || cookieValue(resp, "lb_affinity") != "" {
			t.Fatalf("with %q first: %s and Set-Cookie %q, want %s and none", planted, resp.Header.Get("X-Backend"), cookieValue(resp, "lb_affinity"), bound)
		}
	}
}

// TestRemovedUpstreamMovesOnceAcrossNodes: sessions of an upstream that
// a reload removed, replayed in parallel through two nodes sharing Redis,
// all land on one upstream per session.
func TestRemovedUpstreamMovesOnceAcrossNodes(t *testing.T) {
	redis := testproc.StartRedis(t)
	c := startCluster(t, "redis {\n\t\taddress "+redis.Addr+"\n\t}", 2, "rebind")
	removed := c.backends[0]
	var cookies []string
	for len(cookies) < 3 {
		resp := doWithCookies(t, c.nodes[0], "/whoami")
		if resp.Header.Get("X-Backend") == removed.Name {
			cookies = append(cookies, "lb_affinity="+cookieValue(resp, "lb_affinity"))
		}
	}
	data := copyData(c.data)
	data["upstreams"] = harness.Upstreams(c.backends[1:])
	for _, n := range c.nodes {
		n.ReloadWith(t, stickySites, data)
	}
	for _, cookie := range cookies {
		var mu sync.Mutex
		landed := map[string]int{}
		var wg sync.WaitGroup
		for i := range 30 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp := doWithCookies(t, c.nodes[i%2], "/whoami", cookie)
				mu.Lock()
				landed[resp.Header.Get("X-Backend")]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if len(landed) != 1 || landed[removed.Name] > 0 {
			t.Fatalf("one session of the removed upstream landed on %v, want one upstream", landed)
		}
	}
}

// lruSites keeps app sessions in a small named memory store.
const lruSites = `{
	{{.Global}}
	session_store small memory {
		max_bindings 200
	}
}
:{{.HTTPPort}} {
	sticky_learn
	reverse_proxy {{.X.upstreams}} {
		lb_policy sticky {
			app_cookie PHPSESSID
			store small
		}
	}
}
`

// TestAnonymousSessionsDoNotLogUsersOut: 300 clients that start a session
// and never return, on max_bindings 200, once made the store refuse the
// logins after them (14 of 20 lost their backend). The least recently
// used bindings now make room.
func TestAnonymousSessionsDoNotLogUsersOut(t *testing.T) {
	backends := harness.StartBackends(t, 3)
	c := harness.StartCaddyWith(t, lruSites, map[string]any{"upstreams": harness.Upstreams(backends)})
	for i := range 300 {
		resp, err := harness.NewClient().Get(c.URL("/login"))
		if err != nil {
			t.Fatalf("anonymous %d: %v", i, err)
		}
		resp.Body.Close()
	}
	lost := 0
	for id := range 20 {
		u := newUser("app", id)
		login := u.mustDo(t, c, "/login")
		for range 3 {
			if a := u.mustDo(t, c, "/whoami"); a.backend != login.backend || !a.known {
				lost++
				break
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of 20 users lost their backend after 300 anonymous sessions", lost)
	}
	if n := metric(t, c, `caddylb_session_store_evictions_total{store="small"}`); n < 100 {
		t.Fatalf("evictions counted: %v, want at least 100", n)
	}
}

// shortTokenSite keeps LB cookies honoured for 2 s (ttl 2s).
const shortTokenSite = `{
	{{.Global}}
}
:{{.HTTPPort}} {
	reverse_proxy {{.X.upstreams}} {
		lb_policy sticky {
			secret {{.X.secret}}
			ttl 2s
		}
		header_down X-Sticky-Outcome {http.sticky.outcome}
	}
}
`

// TestLBCookieExpiresOnTheServer: an LB cookie older than token_max_age
// (by default the ttl) starts a new session, whatever the client kept; a
// cookie copied from a log once worked forever.
func TestLBCookieExpiresOnTheServer(t *testing.T) {
	backends := harness.StartBackends(t, 2)
	c := harness.StartCaddyWith(t, shortTokenSite, map[string]any{"upstreams": harness.Upstreams(backends), "secret": testSecret})
	first := doWithCookies(t, c, "/whoami")
	recorded := doWithCookies(t, c, "/whoami", "lb_affinity="+cookieValue(first, "lb_affinity"))
	cookie := "lb_affinity=" + cookieValue(recorded, "lb_affinity")
	if got := doWithCookies(t, c, "/whoami", cookie).Header.Get("X-Sticky-Outcome"); got != "hit" {
		t.Fatalf("a fresh cookie: outcome %q, want hit", got)
	}
	time.Sleep(2500 * time.Millisecond)
	old := doWithCookies(t, c, "/whoami", cookie)
	if got := old.Header.Get("X-Sticky-Outcome"); got != "new" || cookieValue(old, "lb_affinity") == "" {
		t.Fatalf("a cookie older than the ttl: outcome %q, Set-Cookie %q; want a new session", got, cookieValue(old, "lb_affinity"))
	}
}
