package sessionstore

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/fleetinfo"
	"github.com/caddylb/caddylb/internal/promreg"
)

// defaultHeartbeat is how often a node writes its record by default.
const defaultHeartbeat = 5 * time.Second

// heartbeatsToLive is how many heartbeats a record outlives: a node that
// stops (killed, partitioned) drops out of the registry after that many
// intervals without one.
const heartbeatsToLive = 3

// FleetBackend is implemented by shared stores that hold a registry of
// the LB nodes using them (Redis).
type FleetBackend interface {
	// FleetHeartbeat is how often a node registers; <= 0: never.
	FleetHeartbeat() time.Duration
	// Register writes the node's record, to expire after ttl.
	Register(ctx context.Context, id string, record []byte, ttl time.Duration) error
	// Members returns the live records.
	Members(ctx context.Context) ([][]byte, error)
}

// NodeRecord is what a node tells the others through a store.
type NodeRecord struct {
	ID        string    `json:"id"`
	Hostname  string    `json:"hostname"`
	Version   string    `json:"version"`
	Listen    []string  `json:"listen"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"last_heartbeat"`
	// Fingerprints of the settings the fleet must agree on.
	Fingerprints []fleetinfo.Fingerprint `json:"fingerprints"`
	// Requests in flight per upstream of the store, at the heartbeat.
	Active map[string]int `json:"active_requests,omitempty"`
	// Stores this node shares with the reader, filled in by Fleet.
	Stores []string `json:"stores,omitempty"`
}

// DriftValue is one value of a setting and the nodes holding it.
type DriftValue struct {
	Value string   `json:"value"`
	Nodes []string `json:"nodes"`
}

// Drift is a setting on which the nodes of a store disagree.
type Drift struct {
	Setting string       `json:"setting"`
	Scope   string       `json:"scope"`
	Store   string       `json:"store"`
	Values  []DriftValue `json:"values"`
}

// sameAs reports whether d and o are one drift seen through two stores.
func (d Drift) sameAs(o Drift) bool {
	o.Store = d.Store
	return d.signature() == o.signature()
}

// signature identifies a drift and its values, to log each change once.
func (d Drift) signature() string {
	b, _ := json.Marshal(d)
	return string(b)
}

// ComputeDrift compares the fingerprints of the nodes of one store: for
// each setting and scope, the nodes whose values differ. A node that does
// not publish a scope at all (a policy it does not run) is not compared
// on it.
func ComputeDrift(store string, nodes []NodeRecord) []Drift {
	type key struct{ setting, scope string }
	byKey := map[key]map[string][]string{} // -> value -> node ids
	for _, n := range nodes {
		perNode := map[key][]string{}
		for _, f := range n.Fingerprints {
			k := key{f.Setting, f.Scope}
			perNode[k] = append(perNode[k], f.Value)
		}
		for k, values := range perNode {
			sort.Strings(values)
			v := strings.Join(values, " ")
			if byKey[k] == nil {
				byKey[k] = map[string][]string{}
			}
			byKey[k][v] = append(byKey[k][v], n.ID)
		}
	}
	var out []Drift
	for k, values := range byKey {
		if len(values) < 2 {
			continue
		}
		d := Drift{Setting: k.setting, Scope: k.scope, Store: store}
		for v, ids := range values {
			sort.Strings(ids)
			d.Values = append(d.Values, DriftValue{Value: v, Nodes: ids})
		}
		sort.Slice(d.Values, func(i, j int) bool { return d.Values[i].Nodes[0] < d.Values[j].Nodes[0] })
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Setting != out[j].Setting {
			return out[i].Setting < out[j].Setting
		}
		return out[i].Scope < out[j].Scope
	})
	return out
}

// fleetState is what the fleet registrations saw at their last
// heartbeat, by store name. It outlives config reloads, so a drift that
// persists across a reload is not logged again; the registration that
// wrote it last owns it, and the metrics export it while that
// registration runs. A store that leaves the config leaves a small entry
// behind, no longer exported.
var fleetState = struct {
	sync.Mutex
	byStore map[string]*storeFleet
}{byStore: map[string]*storeFleet{}}

type storeFleet struct {
	owner *fleetMember
	nodes int
	drift map[string]Drift // by signature
}

// fleetCollector exports caddylb_fleet_nodes{store} and
// caddylb_fleet_drift{store,setting} from fleetState at scrape time.
type fleetCollector struct{}

var (
	fleetNodesDesc = prometheus.NewDesc("caddylb_fleet_nodes",
		"LB nodes registered in a shared session store (this one included), at the last heartbeat.",
		[]string{"store"}, nil)
	fleetDriftDesc = prometheus.NewDesc("caddylb_fleet_drift",
		"Scopes (policies, stores, CAs) whose setting differs between the nodes of a store, at the last heartbeat.",
		[]string{"store", "setting"}, nil)
	theFleetCollector = new(fleetCollector)
)

// Describe implements prometheus.Collector.
func (*fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fleetNodesDesc
	ch <- fleetDriftDesc
}

// Collect implements prometheus.Collector.
func (*fleetCollector) Collect(ch chan<- prometheus.Metric) {
	fleetState.Lock()
	defer fleetState.Unlock()
	for store, st := range fleetState.byStore {
		if st.owner.stopped.Load() {
			continue // the store left the config, or a reload's registration takes over
		}
		ch <- prometheus.MustNewConstMetric(fleetNodesDesc, prometheus.GaugeValue, float64(st.nodes), store)
		perSetting := map[string]int{}
		for _, d := range st.drift {
			perSetting[d.Setting]++
		}
		for setting, n := range perSetting {
			ch <- prometheus.MustNewConstMetric(fleetDriftDesc, prometheus.GaugeValue, float64(n), store, setting)
		}
	}
}

// fleetMember registers this node in one store and watches for drift.
type fleetMember struct {
	store    *Store
	backend  FleetBackend
	ctx      caddy.Context
	logger   *zap.Logger
	interval time.Duration
	stop     chan struct{}
	done     sync.WaitGroup
	stopped  atomic.Bool
}

func (m *fleetMember) run() {
	defer m.done.Done()
	tick := time.NewTicker(m.interval)
	defer tick.Stop()
	for {
		m.beat()
		select {
		case <-m.stop:
			return
		case <-tick.C:
		}
	}
}

// selfRecord is this node's record for store now, in the config of ctx.
func selfRecord(ctx caddy.Context, store string, now time.Time) NodeRecord {
	self := fleetinfo.Self()
	return NodeRecord{
		ID:           self.ID,
		Hostname:     self.Hostname,
		Version:      version(),
		Listen:       listenAddresses(ctx),
		Started:      self.Started,
		Heartbeat:    now.UTC().Truncate(time.Millisecond),
		Fingerprints: fingerprintsFor(ctx, store),
		Active:       fleetinfo.Load(ctx, store),
	}
}

// beat registers the node, reads the others and reports drift.
func (m *fleetMember) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rec, _ := json.Marshal(selfRecord(m.ctx, m.store.Name(), time.Now()))
	if err := m.backend.Register(ctx, fleetinfo.Self().ID, rec, heartbeatsToLive*m.interval); err != nil {
		m.logger.Debug("fleet heartbeat failed", zap.String("store", m.store.Name()), zap.Error(err))
		return
	}
	nodes, err := m.members(ctx)
	if err != nil {
		return
	}
	m.report(len(nodes), ComputeDrift(m.store.Name(), nodes))
}

// members reads and decodes the live records.
func (m *fleetMember) members(ctx context.Context) ([]NodeRecord, error) {
	raw, err := m.backend.Members(ctx)
	if err != nil {
		return nil, err
	}
	nodes := make([]NodeRecord, 0, len(raw))
	for _, r := range raw {
		var n NodeRecord
		if json.Unmarshal(r, &n) == nil && n.ID != "" {
			nodes = append(nodes, n)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })
	return nodes, nil
}

// report logs each new drift once as a warning and each resolved one
// once, and records the state the metrics export.
func (m *fleetMember) report(nodes int, drift []Drift) {
	fleetState.Lock()
	defer fleetState.Unlock()
	st := fleetState.byStore[m.store.Name()]
	if st == nil {
		st = &storeFleet{drift: map[string]Drift{}}
		fleetState.byStore[m.store.Name()] = st
	}
	now := map[string]Drift{}
	for _, d := range drift {
		now[d.signature()] = d
	}
	for sig, d := range now {
		if _, seen := st.drift[sig]; !seen {
			m.logger.Warn("LB nodes sharing this store disagree on a setting; sessions or signatures made by one are refused by the others",
				zap.String("store", d.Store), zap.String("setting", d.Setting), zap.String("scope", d.Scope),
				zap.Any("values", d.Values))
		}
	}
	for sig, d := range st.drift {
		if _, still := now[sig]; !still {
			m.logger.Info("fleet drift resolved", zap.String("store", d.Store),
				zap.String("setting", d.Setting), zap.String("scope", d.Scope))
		}
	}
	st.owner, st.nodes, st.drift = m, nodes, now
}

// leave marks the registration stopped. Its store's state stays, so that
// a reload's new registration (which takes it over at its first
// heartbeat) logs no drift again; the metrics skip it meanwhile, and for
// good if the store left the config.
func (m *fleetMember) leave() { m.stopped.Store(true) }

// fingerprintsFor are the fingerprints a node writes to store: the
// sticky policies that use it, and the settings of the whole node (upload
// signing secrets, CA roots). With store "" (no registry) all of them.
func fingerprintsFor(ctx caddy.Context, store string) []fleetinfo.Fingerprint {
	all := fleetinfo.Of(ctx)
	if store == "" {
		return all
	}
	out := all[:0:0]
	for _, f := range all {
		if !strings.HasPrefix(f.Setting, "sticky.") || strings.HasPrefix(f.Scope, "store "+store+",") {
			out = append(out, f)
		}
	}
	return out
}

// listenAddresses are the http servers' listen addresses.
func listenAddresses(ctx caddy.Context) []string {
	appVal, err := ctx.AppIfConfigured("http")
	if err != nil {
		return nil
	}
	var out []string
	for _, srv := range appVal.(*caddyhttp.App).Servers {
		out = append(out, srv.Listen...)
	}
	sort.Strings(out)
	return out
}

// version is caddy-lb's build (module version or VCS revision) and
// Caddy's, read once: it does not change while the process runs.
// Version is this build's version, as the fleet records show it.
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	v := "devel"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range append([]*debug.Module{&info.Main}, info.Deps...) {
			if dep.Path == "github.com/caddylb/caddylb" && dep.Version != "" && dep.Version != "(devel)" {
				v = dep.Version
			}
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && v == "devel" && len(s.Value) >= 12 {
				v = "devel+" + s.Value[:12]
			}
		}
	}
	simple, _ := caddy.Version()
	return fmt.Sprintf("caddylb %s, caddy %s", v, simple)
})

// Fleet is the view of the fleet through every shared store of the
// running config: the nodes (each once, with the stores it shares with
// this one) and the drift. Without a shared store it is this node alone.
type Fleet struct {
	Nodes []NodeRecord `json:"nodes"`
	Drift []Drift      `json:"drift"`
	// Errors names the stores that could not be read.
	Errors []string `json:"errors,omitempty"`
}

// Fleet reads the registries now.
func (a *App) Fleet(ctx context.Context) Fleet {
	out := Fleet{Nodes: []NodeRecord{}, Drift: []Drift{}}
	byID := map[string]int{}
	add := func(n NodeRecord, store string) {
		i, ok := byID[n.ID]
		if !ok {
			i = len(out.Nodes)
			byID[n.ID] = i
			n.Active = nil
			out.Nodes = append(out.Nodes, n)
		}
		if n.Heartbeat.After(out.Nodes[i].Heartbeat) {
			out.Nodes[i].Heartbeat = n.Heartbeat
		}
		if store != "" {
			out.Nodes[i].Stores = append(out.Nodes[i].Stores, store)
		}
	}
	for _, m := range a.members() {
		nodes, err := m.members(ctx)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Sprintf("store %s: %v", m.store.Name(), err))
			continue
		}
		for _, n := range nodes {
			add(n, m.store.Name())
		}
		for _, d := range ComputeDrift(m.store.Name(), nodes) {
			// A node-wide setting (a CA root) seen through two stores is
			// one drift.
			if !slices.ContainsFunc(out.Drift, func(prev Drift) bool { return prev.sameAs(d) }) {
				out.Drift = append(out.Drift, d)
			}
		}
	}
	if _, ok := byID[fleetinfo.Self().ID]; !ok {
		cfg := a.ctx
		if cfg.Context == nil {
			cfg = caddy.ActiveContext()
		}
		add(selfRecord(cfg, "", time.Now()), "")
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].ID < out.Nodes[j].ID })
	return out
}

// FleetLoad sums the requests in flight to each upstream of store over
// the nodes registered in it (this node's count is read now, the others'
// at their last heartbeat), and answers how many nodes were summed. A
// store without a registry answers this node's counts.
func (a *App) FleetLoad(ctx context.Context, store string) (map[string]int, int, error) {
	self := fleetinfo.Load(a.ctx, store)
	for _, m := range a.members() {
		if m.store.Name() != store {
			continue
		}
		nodes, err := m.members(ctx)
		if err != nil {
			return self, 1, err
		}
		sum := map[string]int{}
		for up, n := range self {
			sum[up] = n
		}
		count := 1
		for _, n := range nodes {
			if n.ID == fleetinfo.Self().ID {
				continue
			}
			count++
			for up, v := range n.Active {
				sum[up] += v
			}
		}
		return sum, count, nil
	}
	return self, 1, nil
}

// registerFleetMetrics adds the fleet gauges to registry.
func registerFleetMetrics(registry prometheus.Registerer) error {
	return promreg.Register(registry, theFleetCollector)
}
