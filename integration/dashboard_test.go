package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/caddylb/caddylb/integration/harness"
	"github.com/caddylb/caddylb/internal/testproc"
)

// dashboardSite is a sticky site on a Redis store that every node
// loading it shares, with the dashboard at /lb-status/ (actions on) and
// /lb-status-ro/ (read-only). It answers on any host name, so that the
// browser can also reach it from another origin (localhost).
const dashboardSite = `{
	{{.Global}}
	session_store shared redis {
		address {{.X.redis}}
	}
}

http://:{{.HTTPPort}} {
	handle_path /lb-status/* {
		lb_dashboard {
			actions
			refresh 500ms
		}
	}
	handle_path /lb-status-ro/* {
		lb_dashboard {
			refresh 500ms
		}
	}
	reverse_proxy {{.X.upstreams}} {
		lb_policy sticky {
			secret 0123456789abcdef0123456789abcdef
			store shared
		}
	}
}
`

// evalJS runs expression in the page and returns its value, awaited
// when it is a promise.
func evalJS[T any](t *testing.T, ctx context.Context, expression string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expression, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluating %s: %v", expression, err)
	}
	return v
}

// waitJS polls expression in the page until it is true, for at most d.
func waitJS(t *testing.T, ctx context.Context, what, expression string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !evalJS[bool](t, ctx, expression) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not so after %v (%s)", what, d, expression)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newSessions sends n first requests, each from a new client, through c
// and counts who served them.
func newSessions(t *testing.T, c *harness.Caddy, n int) map[string]int {
	t.Helper()
	served := map[string]int{}
	for i := 0; i < n; i++ {
		resp, _ := harness.Get(t, harness.NewClient(), c.URL("/"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("new session %d: %s", i, resp.Status)
		}
		served[resp.Header.Get("X-Backend")]++
	}
	return served
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(t.ArtifactDir(), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// TestDashboardInBrowser drives the page in a real headless Chromium: a
// row per upstream, numbers that move by themselves as sessions arrive,
// Drain clicked on one node honoured by the other node sharing the
// store, no buttons on the read-only page, and actions refused from
// another origin.
func TestDashboardInBrowser(t *testing.T) {
	redis := testproc.StartRedis(t)
	backends := harness.StartBackends(t, 3)
	data := map[string]any{"redis": redis.Addr, "upstreams": harness.Upstreams(backends)}
	a := harness.StartCaddyNode(t, "node-a", dashboardSite, data)
	b := harness.StartCaddyNode(t, "node-b", dashboardSite, data)
	ctx := harness.StartBrowser(t)

	page := a.URL("/lb-status/")
	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	rows := `document.querySelectorAll("#upstreams tbody tr[data-address]")`
	waitJS(t, ctx, "a row per upstream", rows+`.length === 3`, 15*time.Second)
	for _, be := range backends {
		if !evalJS[bool](t, ctx, fmt.Sprintf(`!!document.querySelector('#upstreams tr[data-address=%q] button.drain')`, be.Addr)) {
			t.Errorf("no Drain button in the row of %s", be.Addr)
		}
	}
	waitJS(t, ctx, "the page says it is live", `document.getElementById("status").textContent === "live"`, 10*time.Second)

	// The numbers change by themselves: no reload, only new sessions.
	newRate := `document.querySelector("#policies td.new").textContent`
	before := evalJS[string](t, ctx, newRate)
	newSessions(t, a, 30)
	waitJS(t, ctx, "the new-session rate moved after 30 new sessions",
		fmt.Sprintf(`%s !== %q && %s !== "0"`, newRate, before, newRate), 15*time.Second)
	waitJS(t, ctx, "requests per second shown for the upstreams",
		`[...document.querySelectorAll("#upstreams td.rps")].some((td) => parseFloat(td.textContent) > 0)`, 15*time.Second)
	screenshot(t, ctx, "dashboard.png")
	// The page's counters are the metrics' counters.
	resp, metrics := harness.Get(t, http.DefaultClient, a.AdminURL("/metrics"))
	for _, be := range backends {
		series := fmt.Sprintf(`caddylb_upstream_requests_total{upstream=%q}`, be.Addr)
		if resp.StatusCode != 200 || !strings.Contains(metrics, series) {
			t.Errorf("/metrics has no %s", series)
		}
	}

	// Drain the first backend from the page, on node A.
	drained := backends[0]
	row := fmt.Sprintf(`#upstreams tr[data-address=%q]`, drained.Addr)
	// Drain acts on every node sharing the store: the button asks for a
	// second click.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+" button.drain"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the button asks to confirm", fmt.Sprintf(`document.querySelector(%q).textContent === "Confirm drain?"`, row+" button.drain"), 5*time.Second)
	if evalJS[bool](t, ctx, fmt.Sprintf(`document.querySelector(%q).classList.contains("draining")`, row)) {
		t.Fatal("one click drained the upstream")
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+" button.drain"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the row shows the drain", fmt.Sprintf(`document.querySelector(%q).classList.contains("draining")`, row), 10*time.Second)
	waitJS(t, ctx, "the row offers Undrain", fmt.Sprintf(`!!document.querySelector(%q)`, row+" button.undrain"), 10*time.Second)
	if msg := evalJS[string](t, ctx, `document.getElementById("msg").textContent`); !strings.Contains(msg, "drain: done") {
		t.Errorf("message after Drain: %q", msg)
	}
	// The sparklines: once the history holds two samples (5 s apart),
	// each row draws its requests/s line.
	waitJS(t, ctx, "a sparkline drawn", `[...document.querySelectorAll("#upstreams svg.spark path.req")].some((p) => (p.getAttribute("d") || "").includes("L"))`, 15*time.Second)
	screenshot(t, ctx, "dashboard-drained.png")

	// Node B shares the store: its new sessions avoid the drained backend.
	served := newSessions(t, b, 30)
	if served[drained.Name] != 0 || len(served) != 2 {
		t.Fatalf("after Drain on node A's page, node B sent new sessions %v; want none to %s", served, drained.Name)
	}
	var ups []struct {
		Address  string `json:"address"`
		Draining bool   `json:"draining"`
	}
	resp, body := harness.Get(t, http.DefaultClient, b.AdminURL("/lb/upstreams"))
	if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &ups) != nil {
		t.Fatalf("node B /lb/upstreams: %s %s", resp.Status, body)
	}
	for _, u := range ups {
		if u.Draining != (u.Address == drained.Addr) {
			t.Errorf("node B sees %s draining=%v", u.Address, u.Draining)
		}
	}
	if !strings.Contains(a.Log(), `"msg":"dashboard action"`) || !strings.Contains(a.Log(), `"action":"drain"`) {
		t.Errorf("the drain is not in node A's log:\n%s", a.Log())
	}

	// Another origin (localhost instead of 127.0.0.1, the same server)
	// cannot take an action, whatever the browser lets it send.
	evil := strings.Replace(a.URL("/"), "127.0.0.1", "localhost", 1)
	if err := chromedp.Do(ctx, chromedp.Navigate(evil)); err != nil {
		t.Fatal(err)
	}
	status := evalJS[float64](t, ctx, fmt.Sprintf(`fetch(%q, {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
		body: JSON.stringify({action: "undrain", address: %q})}).then((r) => r.status)`, page+"action", drained.Addr))
	if status != 0 { // an opaque answer: the browser hides it from that origin
		t.Errorf("cross-origin no-cors POST read status %v", status)
	}
	if !strings.Contains(a.Log(), "cross-site request refused") {
		t.Error("the cross-origin POST was not refused in the log")
	}
	if served := newSessions(t, a, 12); served[drained.Name] != 0 {
		t.Fatalf("the cross-origin undrain took effect: new sessions %v", served)
	}

	// The read-only page: the rows, no buttons, and actions refused.
	if err := chromedp.Do(ctx, chromedp.Navigate(a.URL("/lb-status-ro/"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "read-only rows", rows+`.length === 3`, 15*time.Second)
	if n := evalJS[float64](t, ctx, `document.querySelectorAll("button.drain, button.undrain").length`); n != 0 {
		t.Errorf("the read-only page has %v Drain/Undrain buttons", n)
	}
	if evalJS[bool](t, ctx, `!document.getElementById("forget").classList.contains("hidden")`) {
		t.Error("the read-only page shows the forget-session form")
	}
	refused := evalJS[float64](t, ctx, fmt.Sprintf(`fetch("action", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({action: "undrain", address: %q})}).then((r) => r.status)`, drained.Addr))
	if refused != 403 {
		t.Errorf("read-only action answered %v, want 403", refused)
	}
	screenshot(t, ctx, "dashboard-readonly.png")
}
