// Package lbstats keeps the per-upstream and per-policy counters that the
// sticky policies update on the request path and that the metrics and the
// lb_dashboard read: requests and errors per upstream, sessions bound, and
// each policy's selection outcomes.
//
// The counters are package-level and keyed by name (an upstream's dial
// address, a policy's store and namespace), so they outlive config reloads:
// a rate read across a reload does not jump. The hot path is one map read
// and an atomic add; a request's outcome is read after it ended by one
// background sweep (see Track), not by a goroutine per request.
package lbstats

import (
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
)

// maxKeys bounds each table: upstreams and policies come from the config,
// but dynamic upstreams could name many. Past the bound, new names share
// one overflow entry, so memory stays bounded and totals stay right.
const maxKeys = 4096

// Overflow is the name of the entry shared by names past the bound.
const Overflow = "(other)"

// Upstream counts what this node sent to one upstream.
type Upstream struct {
	// Requests (HTTP) or connections (pass-through) that ended.
	Requests atomic.Int64
	// Of those, the ones that failed: no response (dial or read failure,
	// timeout, client gone first), a 5xx, or a try that was retried.
	Errors atomic.Int64
	// Sessions this node bound to it: new sessions and rebound ones.
	Bound atomic.Int64
}

// Outcomes counts one sticky policy's selections by outcome; the index is
// the outcome's position in the names the policy registered with.
type Outcomes struct {
	names  []string
	counts []atomic.Int64
}

// Add counts one selection with outcome index i; a nil Outcomes (a
// policy never provisioned, in tests) counts nothing.
func (o *Outcomes) Add(i int) {
	if o != nil && i >= 0 && i < len(o.counts) {
		o.counts[i].Add(1)
	}
}

// Snapshot returns the counts by outcome name.
func (o *Outcomes) Snapshot() map[string]int64 {
	if o == nil {
		return nil
	}
	out := make(map[string]int64, len(o.names))
	for i, n := range o.names {
		out[n] = o.counts[i].Load()
	}
	return out
}

// table is a bounded name -> *V map.
type table[V any] struct {
	mu   sync.Mutex
	m    sync.Map // string -> *V
	n    int
	make func() *V
}

func (t *table[V]) get(name string) *V { return t.getWith(name, t.make) }

// getWith is get with the entry made, complete, by mk when it is new.
func (t *table[V]) getWith(name string, mk func() *V) *V {
	if v, ok := t.m.Load(name); ok {
		return v.(*V)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.m.Load(name); ok {
		return v.(*V)
	}
	if t.n >= maxKeys && name != Overflow {
		t.mu.Unlock()
		v := t.getWith(Overflow, mk)
		t.mu.Lock()
		return v
	}
	v := mk()
	t.m.Store(name, v)
	t.n++
	return v
}

func (t *table[V]) each(fn func(string, *V)) {
	var names []string
	t.m.Range(func(k, _ any) bool {
		names = append(names, k.(string))
		return true
	})
	sort.Strings(names)
	for _, n := range names {
		v, _ := t.m.Load(n)
		fn(n, v.(*V))
	}
}

var upstreams = table[Upstream]{make: func() *Upstream { return new(Upstream) }}

// UpstreamCounters returns the counters of the upstream with dial address
// addr, creating them on first use. Callers on the hot path keep the
// pointer rather than looking it up per request.
func UpstreamCounters(addr string) *Upstream { return upstreams.get(addr) }

// EachUpstream calls fn for every upstream counted so far, by address.
func EachUpstream(fn func(addr string, c *Upstream)) { upstreams.each(fn) }

// outcomes are made by outcomesFor, complete with their names.
var outcomes table[Outcomes]

// PolicyOutcomes returns the outcome counters of the policy named name
// (its kind, store and namespace), for outcomes names. A policy reloaded
// with the same name keeps its counts. Two kinds of policy that would
// share a name (and not their outcomes) get an entry each.
func PolicyOutcomes(name string, names []string) *Outcomes {
	if o := outcomesFor(name, names); o != nil {
		return o
	}
	return outcomesFor(name+" ("+strings.Join(names, ",")+")", names)
}

// outcomesFor is the entry of name if it counts outcomes names (or is
// new), else nil (another kind took the name, or the bound was hit by
// another kind: nothing is counted then).
func outcomesFor(name string, names []string) *Outcomes {
	o := outcomes.getWith(name, func() *Outcomes {
		return &Outcomes{names: names, counts: make([]atomic.Int64, len(names))}
	})
	if !slices.Equal(o.names, names) {
		return nil
	}
	return o
}

// EachPolicy calls fn for every policy counted so far, by name.
func EachPolicy(fn func(name string, o *Outcomes)) { outcomes.each(fn) }
