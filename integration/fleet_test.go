package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// waitUntil polls cond every 100ms until it holds, failing the test
// after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// visitEverywhere sends every user once through each node and checks
// that each answers from the user's bound backend: the bindings are
// shared, and every node has seen them.
func visitEverywhere(t *testing.T, c *cluster, users []*user, bound map[*user]string) {
	t.Helper()
	for _, node := range c.nodes {
		for _, u := range users {
			if a := u.mustDo(t, node, "/whoami"); a.status != http.StatusOK || a.backend != bound[u] {
				t.Fatalf("%s user %d through another node: %d from %q, bound to %s", u.site, u.id, a.status, a.backend, bound[u])
			}
		}
	}
}

// TestFleetSentinelFailover runs two LB nodes on a Redis primary with a
// replica and three Sentinels, and kills -9 the primary under load: no
// request fails, no session moves (each node serves the bindings it knows
// while no primary answers), and sessions begun after the failover are
// shared through the promoted replica.
func TestFleetSentinelFailover(t *testing.T) {
	primary := testproc.StartRedis(t)
	replica := testproc.StartRedisReplica(t, primary.Addr)
	sentinels := testproc.StartSentinels(t, 3, "lbmaster", primary.Addr, "sentinel-pass")
	sentinels.WaitKnowsReplicas(t, 1)
	store := fmt.Sprintf("redis {\n\t\tsentinel lbmaster\n\t\taddress %s\n\t\tsentinel_password sentinel-pass\n\t\theartbeat 1s\n\t}", strings.Join(sentinels.Addrs, " "))
	c := startCluster(t, store, 2, "rebind")
	users, bound := bindEverySite(t, c, 6)
	visitEverywhere(t, c, users, bound)

	failedOver := make(chan struct{})
	var failoverTook time.Duration
	go func() {
		defer close(failedOver)
		time.Sleep(500 * time.Millisecond)
		primary.Kill()
		start := time.Now()
		for time.Since(start) < 30*time.Second {
			if p, err := sentinels.Primary(); err == nil && p == replica.Addr {
				failoverTook = time.Since(start)
				// And the clients follow it: on the +switch-master event,
				// or at their next topology check (every 3 s) if a loaded
				// machine delayed the event. A session begun on a node
				// that still writes to the dead primary is only in that
				// node's memory until it does (it failed once in CI with
				// 2 s here, the Sentinels themselves taking 12 s).
				time.Sleep(7 * time.Second)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	var mu sync.Mutex
	moved := map[string]int{}
	res := loadUntil(failedOver, 8, func(ctx context.Context, i int) error {
		u := users[i%len(users)]
		a, err := u.do(ctx, c.nodes[i%2], "/whoami")
		if err != nil {
			return err
		}
		if a.status != http.StatusOK {
			return fmt.Errorf("%s user %d: status %d: %s", u.site, u.id, a.status, a.body)
		}
		if a.backend != bound[u] {
			mu.Lock()
			moved[u.site]++
			mu.Unlock()
		}
		return nil
	})
	if failoverTook == 0 {
		t.Fatal("the Sentinels did not promote the replica within 30s")
	}
	t.Logf("primary killed; the Sentinels promoted the replica after %v; load: %v", failoverTook.Round(time.Millisecond), res)
	if res.Failures > 0 || res.Successes < 300 {
		t.Fatalf("through the failover: %v", res)
	}
	if len(moved) > 0 {
		t.Fatalf("answers from another backend than the bound one, by site: %v", moved)
	}
	// Sessions begun now are written to the new primary and shared.
	for id := 100; id < 106; id++ {
		for _, site := range []string{"header", "app", "ip"} {
			u := newUser(site, id)
			b := u.start(t, c.nodes[0])
			if a := u.mustDo(t, c.nodes[1], "/whoami"); a.backend != b {
				t.Fatalf("%s user %d begun after the failover: node 2 answers from %s, node 1 bound it to %s", site, id, a.backend, b)
			}
		}
	}
	out, err := testproc.RedisDo(replica.Addr, "", "DBSIZE")
	if err != nil || out == "0" {
		t.Fatalf("the promoted replica holds %q keys (%v)", out, err)
	}
	body := adminJSON(t, c.nodes[0], http.MethodGet, "/lb/fleet", "", http.StatusOK)
	var fleet struct{ Nodes []struct{ ID string } }
	if err := json.Unmarshal([]byte(body), &fleet); err != nil || len(fleet.Nodes) != 2 {
		t.Fatalf("/lb/fleet after the failover: %s", body)
	}
}

// TestFleetRedisCluster runs two LB nodes on a three-primary Redis
// Cluster, each given the address of a different primary: sessions are
// shared, the counts of /lb/upstreams are exact on both, a drain through
// one is honoured by the other, and the keys spread over every primary.
func TestFleetRedisCluster(t *testing.T) {
	rc := testproc.StartRedisCluster(t, 3)
	backends := harness.StartBackends(t, 3)
	c := &cluster{backends: backends}
	for i := range 2 {
		data := map[string]any{
			"store":          fmt.Sprintf("redis %s {\n\t\theartbeat 1s\n\t}", rc.Addrs[i]),
			"upstreams":      harness.Upstreams(backends),
			"secret":         testSecret,
			"on_unavailable": "rebind",
		}
		c.data = data
		c.nodes = append(c.nodes, harness.StartCaddyWith(t, stickySites, data))
	}
	for _, node := range c.nodes {
		if !strings.Contains(node.Log(), `"mode": "cluster"`) && !strings.Contains(node.Log(), `"mode":"cluster"`) {
			t.Fatalf("node did not detect the cluster; log:\n%s", node.Log())
		}
	}
	const n = 15
	users, bound := bindEverySite(t, c, n)
	visitEverywhere(t, c, users, bound)
	want := map[string]int64{}
	for _, b := range bound {
		want[c.backend(b).Addr]++
	}
	for i, node := range c.nodes {
		var ups []struct {
			Address       string `json:"address"`
			BoundSessions int64  `json:"bound_sessions"`
		}
		body := adminJSON(t, node, http.MethodGet, "/lb/upstreams", "", http.StatusOK)
		if err := json.Unmarshal([]byte(body), &ups); err != nil {
			t.Fatal(err)
		}
		for _, up := range ups {
			if up.BoundSessions != want[up.Address] {
				t.Fatalf("node %d: %s has %d bound sessions, want %d (%s)", i+1, up.Address, up.BoundSessions, want[up.Address], body)
			}
		}
	}
	keys := 0
	for _, addr := range rc.Addrs {
		out, err := testproc.RedisDo(addr, "", "DBSIZE")
		if err != nil || out == "0" {
			t.Fatalf("primary %s holds %q keys (%v): not spread", addr, out, err)
		}
		t.Logf("primary %s: %s keys", addr, out)
		var k int
		fmt.Sscan(out, &k)
		keys += k
	}
	// Drain the busiest backend through node 1; node 2 sends it no new
	// session.
	drained := c.backend(mostLoadedOf(bound)).Addr
	adminJSON(t, c.nodes[0], http.MethodPost, "/lb/upstreams/drain", `{"address": "`+drained+`"}`, http.StatusOK)
	time.Sleep(300 * time.Millisecond)
	for id := 200; id < 230; id++ {
		u := newUser("header", id)
		if b := u.start(t, c.nodes[1]); c.backend(b).Addr == drained {
			t.Fatalf("node 2 bound a new session to %s, drained through node 1", drained)
		}
	}
	for _, u := range users {
		if u.site == "cookie" {
			continue
		}
		if a := u.mustDo(t, c.nodes[1], "/whoami"); a.backend != bound[u] {
			t.Fatalf("%s user %d left its draining backend: %s", u.site, u.id, a.backend)
		}
	}
}

func mostLoadedOf(bound map[*user]string) string {
	m := map[int]string{}
	i := 0
	for _, b := range bound {
		m[i] = b
		i++
	}
	return mostLoaded(m)
}

// TestFleetRefillAfterEmptyRestart restarts Redis empty under two nodes:
// the nodes write back the bindings they know, and every app-cookie
// session, which only the store can route, stays on its backend.
func TestFleetRefillAfterEmptyRestart(t *testing.T) {
	srv := testproc.StartRedis(t)
	c := startCluster(t, "redis "+srv.Addr, 2, "rebind")
	users, bound := bindUsers(t, c, "app", 60)
	for _, u := range users {
		u.mustDo(t, c.nodes[1], "/whoami")
	}
	time.Sleep(3 * time.Second) // both nodes see the epoch
	srv.Restart(t)
	waitUntil(t, 15*time.Second, "the bindings written back", func() bool {
		out, err := testproc.RedisDo(srv.Addr, "", "EVAL", "return #redis.call('KEYS', 'caddylb:b:*')", "0")
		return err == nil && out == "60"
	})
	moved := 0
	for _, u := range users {
		for _, node := range c.nodes {
			if a := u.mustDo(t, node, "/whoami"); a.backend != bound[u.id] || !a.known {
				moved++
			}
		}
	}
	if moved > 0 {
		t.Fatalf("%d of 120 answers after the empty restart came from another backend or lost the session", moved)
	}
	if !strings.Contains(c.nodes[0].Log()+c.nodes[1].Log(), "lost its data") {
		t.Fatal("no node logged the refill")
	}
}

// fleetView is GET /lb/fleet.
type fleetView struct {
	Nodes []struct {
		ID           string   `json:"id"`
		Hostname     string   `json:"hostname"`
		Version      string   `json:"version"`
		Listen       []string `json:"listen"`
		Fingerprints []struct{ Setting, Scope, Value string }
	} `json:"nodes"`
	Drift []struct {
		Setting string `json:"setting"`
		Scope   string `json:"scope"`
		Store   string `json:"store"`
		Values  []struct {
			Value string   `json:"value"`
			Nodes []string `json:"nodes"`
		} `json:"values"`
	} `json:"drift"`
}

func getFleet(t *testing.T, node *harness.Caddy) (fleetView, string) {
	t.Helper()
	body := adminJSON(t, node, http.MethodGet, "/lb/fleet", "", http.StatusOK)
	var v fleetView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("/lb/fleet: %v: %s", err, body)
	}
	return v, body
}

// TestFleetDrift runs nodes on one Redis: with the same config, /lb/fleet
// lists them and no drift; a node started with another sticky secret is
// named in a drift entry that does not reveal either secret, logged once,
// counted in the metrics; when it stops, it drops out and the drift ends.
func TestFleetDrift(t *testing.T) {
	srv := testproc.StartRedis(t)
	backends := harness.StartBackends(t, 2)
	data := map[string]any{
		"store":          "redis " + srv.Addr + " {\n\t\theartbeat 1s\n\t}",
		"upstreams":      harness.Upstreams(backends),
		"secret":         testSecret,
		"on_unavailable": "rebind",
	}
	a := harness.StartCaddyNode(t, "node-a", stickySites, data)
	b := harness.StartCaddyNode(t, "node-b", stickySites, data)
	waitUntil(t, 5*time.Second, "two nodes registered", func() bool {
		v, _ := getFleet(t, a)
		return len(v.Nodes) == 2
	})
	v, body := getFleet(t, a)
	if len(v.Drift) != 0 {
		t.Fatalf("same config, drift: %s", body)
	}
	for _, n := range v.Nodes {
		if n.Hostname == "" || !strings.HasPrefix(n.Version, "caddylb ") || len(n.Listen) == 0 || len(n.Fingerprints) < 8 {
			t.Fatalf("node record incomplete: %s", body)
		}
	}

	other := copyData(data)
	other["secret"] = "another-secret-0123456789"
	cNode := harness.StartCaddyNode(t, "node-c", stickySites, other)
	waitUntil(t, 5*time.Second, "drift reported", func() bool {
		v, _ := getFleet(t, b)
		return len(v.Nodes) == 3 && len(v.Drift) > 0
	})
	v, body = getFleet(t, b)
	if strings.Contains(body, testSecret) || strings.Contains(body, "another-secret") {
		t.Fatalf("/lb/fleet reveals a secret: %s", body)
	}
	scopes := map[string]bool{}
	for _, d := range v.Drift {
		if d.Setting != "sticky.secrets" || d.Store != "shared" || len(d.Values) != 2 {
			t.Fatalf("unexpected drift entry %+v in %s", d, body)
		}
		if strings.Join(d.Values[0].Nodes, ",") != "node-a,node-b" || strings.Join(d.Values[1].Nodes, ",") != "node-c" {
			t.Fatalf("drift does not split node-a,node-b from node-c: %+v", d)
		}
		scopes[d.Scope] = true
	}
	// The cookie and client_ip sites sign with the secret.
	if !scopes["store shared, namespace cookie:lb_affinity"] || !scopes["store shared, namespace client_ip"] || len(scopes) != 2 {
		t.Fatalf("drift scopes %v", scopes)
	}
	metrics := adminJSON(t, a, http.MethodGet, "/metrics", "", http.StatusOK)
	waitUntil(t, 3*time.Second, "drift metrics", func() bool {
		metrics = adminJSON(t, a, http.MethodGet, "/metrics", "", http.StatusOK)
		return strings.Contains(metrics, `caddylb_fleet_drift{setting="sticky.secrets",store="shared"} 2`) &&
			strings.Contains(metrics, `caddylb_fleet_nodes{store="shared"} 3`)
	})
	time.Sleep(2500 * time.Millisecond) // more heartbeats: still logged once
	if n := strings.Count(a.Log(), "disagree on a setting"); n != 2 {
		t.Fatalf("node-a logged the drift %d times, want once per scope (2)", n)
	}

	// Fleet-wide load: a request held on node-b counts on node-a.
	go func() {
		req, _ := http.NewRequest(http.MethodGet, b.URL("/slow?ms=4000"), nil)
		req.Host = "header.test"
		req.Header.Set("X-Session-Token", "slow-user")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, 4*time.Second, "node-b's request in flight seen through node-a", func() bool {
		var ups []struct {
			FleetActive *int `json:"fleet_active_requests"`
			FleetNodes  *int `json:"fleet_nodes"`
		}
		body := adminJSON(t, a, http.MethodGet, "/lb/upstreams?fleet=1", "", http.StatusOK)
		if json.Unmarshal([]byte(body), &ups) != nil {
			return false
		}
		sum := 0
		for _, up := range ups {
			if up.FleetNodes == nil || *up.FleetNodes != 3 {
				return false
			}
			sum += *up.FleetActive
		}
		return sum >= 1
	})
	adminJSON(t, a, http.MethodGet, "/lb/upstreams?fleet=maybe", "", http.StatusBadRequest)

	cNode.Kill()
	waitUntil(t, 6*time.Second, "node-c dropped out (3 missed heartbeats)", func() bool {
		v, _ := getFleet(t, a)
		return len(v.Nodes) == 2 && len(v.Drift) == 0
	})
	waitUntil(t, 3*time.Second, "drift resolved logged", func() bool {
		return strings.Contains(a.Log(), "fleet drift resolved")
	})
}
