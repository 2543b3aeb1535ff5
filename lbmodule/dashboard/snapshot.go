package dashboard

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddylb/caddylb/assetcdn"
	"github.com/caddylb/caddylb/assetcdn/objectstore"
	"github.com/caddylb/caddylb/internal/fleetinfo"
	"github.com/caddylb/caddylb/lbmodule/lbadmin"
	"github.com/caddylb/caddylb/logship"
	"github.com/caddylb/caddylb/sessionstore"
)

// View is what the page's JSON endpoint answers: the node's state now,
// with rates over the last minute and the series of the last 15.
type View struct {
	Node        NodeInfo  `json:"node"`
	GeneratedAt time.Time `json:"generated_at"`
	// How often the page polls, in milliseconds.
	RefreshMS int64 `json:"refresh_ms"`
	// Whether this handler takes actions; the page shows buttons then.
	Actions bool `json:"actions"`
	// The token an action must carry (empty without actions).
	Token string `json:"token,omitempty"`
	// Seconds each point of a series covers.
	SeriesStep float64              `json:"series_step_s"`
	Upstreams  []UpstreamRow        `json:"upstreams"`
	Policies   []PolicyRow          `json:"policies"`
	Stores     []StoreRow           `json:"session_stores"`
	Assets     AssetsView           `json:"assets"`
	Logs       []logship.SpoolStats `json:"log_shipping"`
	Fleet      sessionstore.Fleet   `json:"fleet"`
	// Parts that could not be read, each naming what failed.
	Errors []string `json:"errors,omitempty"`
}

// NodeInfo is the node serving the page.
type NodeInfo struct {
	ID       string    `json:"id"`
	Hostname string    `json:"hostname"`
	Version  string    `json:"version"`
	Started  time.Time `json:"started"`
}

// UpstreamRow is one row of the upstreams table.
type UpstreamRow struct {
	lbadmin.UpstreamStatus
	// The pool kind: "http" (reverse_proxy with lb_policy sticky),
	// "passthrough" (layer4 sticky) or "http (not sticky)".
	Kind string `json:"kind"`
	// Whether the store is shared by the fleet (bound_sessions then counts
	// every node's sessions).
	SharedStore bool `json:"shared_store"`
	// This node's rates over the last minute: requests (connections for
	// pass-through) per second, the fraction that failed, and sessions
	// it bound per minute. Nil where the pool does not count them.
	RequestsPerSec *Rate `json:"requests_per_s"`
	ErrorRate      *Rate `json:"error_rate"`
	BoundPerMin    *Rate `json:"bound_per_min"`
	// Requests and errors per second over the last 15 minutes, oldest
	// first, one point per series_step_s; nil where no sample was taken.
	RequestSeries []*Rate `json:"requests_series,omitempty"`
	ErrorSeries   []*Rate `json:"errors_series,omitempty"`
}

// PolicyRow is one sticky policy's outcomes per second over the last minute.
type PolicyRow struct {
	lbadmin.PolicyStatus
	Rates map[string]Rate `json:"rates"`
}

// StoreRow is one session store.
type StoreRow struct {
	Name    string `json:"name"`
	Backend string `json:"backend"`
	Shared  bool   `json:"shared"`
	// Whether the probe (a count of its bindings) answered, and how long
	// it took.
	Reachable   bool   `json:"reachable"`
	ProbeMS     Rate   `json:"probe_ms"`
	ProbeError  string `json:"probe_error,omitempty"`
	BreakerOpen bool   `json:"breaker_open"`
	// Over the last minute: calls per second, their mean latency, errors
	// per second and bindings served from this node's copy per second.
	CallsPerSec  Rate `json:"calls_per_s"`
	MeanCallMS   Rate `json:"mean_call_ms"`
	ErrorsPerSec Rate `json:"errors_per_s"`
	StalePerSec  Rate `json:"stale_per_s"`
}

// AssetsView is the asset stores and this node's uploads.
type AssetsView struct {
	Stores  []string             `json:"stores"`
	Uploads assetcdn.UploadStats `json:"uploads"`
	// Uploads stored and refused (too large, type refused, bad request,
	// unauthorized, too slow) per minute, over the last minute.
	StoredPerMin  Rate `json:"stored_per_min"`
	RefusedPerMin Rate `json:"refused_per_min"`
}

// refusedOutcomes are the asset_offload outcomes that refuse an upload.
var refusedOutcomes = []string{"too_large", "type_refused", "bad_request", "unauthorized", "too_slow"}

// buildView reads everything now. A part that cannot be read is named in
// Errors; the rest is still answered.
func buildView(ctx context.Context, hist *history, now time.Time) View {
	self := fleetinfo.Self()
	v := View{
		Node:        NodeInfo{ID: self.ID, Hostname: self.Hostname, Version: sessionstore.Version(), Started: self.Started},
		GeneratedAt: now.UTC(),
		SeriesStep:  sampleInterval.Seconds(),
		Upstreams:   []UpstreamRow{},
		Policies:    []PolicyRow{},
		Stores:      []StoreRow{},
		Logs:        logship.Spools(),
	}
	cur := takeSample(now)
	samples := hist.list()
	base, haveBase := baseline(samples, now, rateWindow)
	if !haveBase {
		base = cur
	}
	dt := now.Sub(base.at)

	var reads map[string]lbadmin.StoreRead
	v.Upstreams, reads = upstreamRows(ctx, cur, base, dt, samples)
	for _, name := range slices.Sorted(maps.Keys(reads)) {
		for _, err := range reads[name].Errors() {
			v.Errors = append(v.Errors, err.Error())
		}
	}
	for _, p := range lbadmin.Policies() {
		row := PolicyRow{PolicyStatus: p, Rates: map[string]Rate{}}
		for outcome, n := range p.Outcomes {
			row.Rates[outcome] = Rate(perSecond(base.policies[p.Name][outcome], n, dt))
		}
		v.Policies = append(v.Policies, row)
	}
	if app := lbadmin.SessionStoreApp(); app != nil {
		v.Stores = storeRows(ctx, app, reads, cur, base, dt)
	}
	v.Fleet = lbadmin.Fleet(ctx)
	v.Errors = append(v.Errors, v.Fleet.Errors...)
	v.Assets = assetsView(cur, base, dt)
	return v
}

// upstreamRows are the rows of every pool, and how asking each store
// went, by name (the first read of a store that two kinds of pool use).
func upstreamRows(ctx context.Context, cur, base sample, dt time.Duration, samples []sample) ([]UpstreamRow, map[string]lbadmin.StoreRead) {
	var rows []UpstreamRow
	ups, list := lbadmin.Upstreams(ctx, true)
	reads := map[string]lbadmin.StoreRead{}
	for _, r := range list {
		if _, seen := reads[r.Name]; !seen {
			reads[r.Name] = r
		}
	}
	for _, st := range ups {
		row := UpstreamRow{UpstreamStatus: st, Kind: "http", SharedStore: reads[st.Store].Shared}
		if st.Passthrough {
			row.Kind = "passthrough"
		}
		withRates(&row, cur, base, dt, samples)
		rows = append(rows, row)
	}
	for _, st := range lbadmin.OtherUpstreams() {
		rows = append(rows, UpstreamRow{UpstreamStatus: st, Kind: "http (not sticky)"})
	}
	return rows, reads
}

// withRates fills a row's rates and series from the samples. Pass-through
// pools count connections and failed dials; an HTTP pool's errors also
// count 5xx answers.
func withRates(row *UpstreamRow, cur, base sample, dt time.Duration, samples []sample) {
	now, sampled := cur.upstreams[row.Address]
	if !sampled {
		return // past maxSeriesUpstreams: no rates rather than wrong ones
	}
	before := base.upstreams[row.Address]
	rps := perSecond(before.requests, now.requests, dt)
	errRate := 0.0
	if n := now.requests - before.requests; n > 0 {
		errRate = float64(now.errors-before.errors) / float64(n)
	}
	bound := perSecond(before.bound, now.bound, dt) * 60
	r, e, b := Rate(rps), Rate(errRate), Rate(bound)
	row.RequestsPerSec, row.ErrorRate, row.BoundPerMin = &r, &e, &b

	// One point per sample interval, aligned to the newest sample.
	row.RequestSeries = make([]*Rate, historyLen-1)
	row.ErrorSeries = make([]*Rate, historyLen-1)
	offset := len(row.RequestSeries) - (len(samples) - 1)
	for i := 1; i < len(samples); i++ {
		a, b := samples[i-1], samples[i]
		at, bt := a.upstreams[row.Address], b.upstreams[row.Address]
		d := b.at.Sub(a.at)
		r, e := Rate(perSecond(at.requests, bt.requests, d)), Rate(perSecond(at.errors, bt.errors, d))
		row.RequestSeries[offset+i-1], row.ErrorSeries[offset+i-1] = &r, &e
	}
}

// Rate is a figure of the view, written with 3 significant digits (and
// at most 3 decimals): the page shows no more, and the 180 points per
// series per upstream add up in the JSON.
type Rate float64

// MarshalJSON writes r rounded.
func (r Rate) MarshalJSON() ([]byte, error) {
	v := float64(r)
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return []byte("0"), nil
	}
	decimals := min(max(2-int(math.Floor(math.Log10(math.Abs(v)))), 0), 3)
	out := strconv.AppendFloat(nil, v, 'f', decimals, 64)
	if decimals > 0 {
		out = bytes.TrimRight(out, "0")
		out = bytes.TrimSuffix(out, []byte("."))
	}
	if string(out) == "-0" || len(out) == 0 {
		return []byte("0"), nil
	}
	return out, nil
}

// storeRows describes each declared store. A store that the upstream rows
// already asked is not asked again: that read is its probe.
func storeRows(ctx context.Context, app *sessionstore.App, reads map[string]lbadmin.StoreRead, cur, base sample, dt time.Duration) []StoreRow {
	var rows []StoreRow
	for _, name := range app.Names() {
		s, err := app.Store(name)
		if err != nil {
			continue
		}
		row := StoreRow{Name: name, Backend: backendName(s.Backend()), Shared: s.Shared(), BreakerOpen: s.BreakerOpen()}
		read, ok := reads[name]
		if !ok { // declared, and no policy uses it
			start := time.Now()
			_, read.CountErr = s.Counts(ctx)
			read.Took = time.Since(start)
		}
		row.ProbeMS = Rate(float64(read.Took.Microseconds()) / 1000)
		row.Reachable = read.CountErr == nil
		if read.CountErr != nil {
			row.ProbeError = read.CountErr.Error()
		}
		c, b := cur.stores[name], base.stores[name]
		row.CallsPerSec = Rate(perSecond(b.Calls, c.Calls, dt))
		if n := c.Calls - b.Calls; n > 0 {
			row.MeanCallMS = Rate((c.LatencySum - b.LatencySum) / float64(n) * 1000)
		}
		row.ErrorsPerSec = Rate(perSecond(b.Errors, c.Errors, dt))
		row.StalePerSec = Rate(perSecond(b.Stale, c.Stale, dt))
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Name < rows[j].Name })
	return rows
}

// backendName is the backend's module name: memory, redis, memcached.
func backendName(b sessionstore.Backend) string {
	if m, ok := b.(caddy.Module); ok {
		return m.CaddyModule().ID.Name()
	}
	return fmt.Sprintf("%T", b)
}

func assetsView(cur, base sample, dt time.Duration) AssetsView {
	v := AssetsView{Stores: []string{}, Uploads: cur.uploads}
	if appVal, err := caddy.ActiveContext().AppIfConfigured("asset_store"); err == nil {
		v.Stores = appVal.(*objectstore.App).Names()
	}
	v.StoredPerMin = Rate(perSecond(base.uploads.Outcomes["stored"], cur.uploads.Outcomes["stored"], dt) * 60)
	var refusedNow, refusedBefore int64
	for _, o := range refusedOutcomes {
		refusedNow += cur.uploads.Outcomes[o]
		refusedBefore += base.uploads.Outcomes[o]
	}
	v.RefusedPerMin = Rate(perSecond(refusedBefore, refusedNow, dt) * 60)
	return v
}
