package sessionstore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddylb/caddylb/internal/fleetinfo"
	"github.com/caddylb/caddylb/internal/testproc"
)

func TestComputeDrift(t *testing.T) {
	fp := func(setting, scope, value string) fleetinfo.Fingerprint {
		return fleetinfo.Fingerprint{Setting: setting, Scope: scope, Value: value}
	}
	a := NodeRecord{ID: "a", Fingerprints: []fleetinfo.Fingerprint{
		fp("sticky.secrets", "store s, namespace cookie:x", "111"),
		fp("sticky.ttl", "store s, namespace cookie:x", "1h0m0s"),
		fp("assets.sign_secret", "asset_offload, store up", "k1"),
		fp("assets.sign_secret", "asset_offload, store up", "k2"),
	}}
	b := NodeRecord{ID: "b", Fingerprints: []fleetinfo.Fingerprint{
		fp("sticky.secrets", "store s, namespace cookie:x", "222"),
		fp("sticky.ttl", "store s, namespace cookie:x", "1h0m0s"),
		fp("assets.sign_secret", "asset_offload, store up", "k2"),
		fp("assets.sign_secret", "asset_offload, store up", "k1"),
		fp("pki.root", "ca local", "r1"), // only b runs reencrypt: not compared
	}}
	c := NodeRecord{ID: "c", Fingerprints: []fleetinfo.Fingerprint{
		fp("sticky.secrets", "store s, namespace cookie:x", "111"),
	}}
	drift := ComputeDrift("s", []NodeRecord{a, b, c})
	if len(drift) != 1 {
		t.Fatalf("drift = %+v, want one entry (the secrets)", drift)
	}
	d := drift[0]
	if d.Setting != "sticky.secrets" || d.Store != "s" || len(d.Values) != 2 ||
		strings.Join(d.Values[0].Nodes, ",") != "a,c" || strings.Join(d.Values[1].Nodes, ",") != "b" {
		t.Fatalf("drift = %+v", d)
	}
	if got := ComputeDrift("s", []NodeRecord{a, a}); len(got) != 0 {
		t.Fatalf("identical nodes drift: %+v", got)
	}
}

// TestFleetRegistryRedis registers two nodes' records in one Redis: each
// reads both; a record that is not renewed drops out after its ttl.
func TestFleetRegistryRedis(t *testing.T) {
	srv := testproc.StartRedis(t)
	be := newTestRedis(t, srv.Addr, func(r *RedisBackend) { r.KeyPrefix = "fl:" })
	ctx := context.Background()
	rec := func(id string) []byte {
		b, _ := json.Marshal(NodeRecord{ID: id, Heartbeat: time.Now()})
		return b
	}
	if err := be.Register(ctx, "n1", rec("n1"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := be.Register(ctx, "n2", rec("n2"), 600*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	m := &fleetMember{backend: be}
	nodes, err := m.members(ctx)
	if err != nil || len(nodes) != 2 || nodes[0].ID != "n1" || nodes[1].ID != "n2" {
		t.Fatalf("members = %+v %v", nodes, err)
	}
	time.Sleep(700 * time.Millisecond)
	nodes, err = m.members(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "n1" {
		t.Fatalf("after n2's ttl: %+v %v", nodes, err)
	}
}

func TestSecretDigestHidesTheSecret(t *testing.T) {
	d := fleetinfo.SecretDigest("correct-horse-battery-staple", "older-secret-0123456")
	if strings.Contains(d, "horse") || strings.Contains(d, "older") || len(d) != 24+1+24 {
		t.Fatalf("digest %q", d)
	}
	if d == fleetinfo.SecretDigest("older-secret-0123456", "correct-horse-battery-staple") {
		t.Fatal("order of the secrets (which one signs) does not change the digest")
	}
	if d != fleetinfo.SecretDigest("correct-horse-battery-staple", "older-secret-0123456") {
		t.Fatal("digest not stable")
	}
}

// TestDriftLoggedOnceAcrossReloads: a drift that persists while the
// config is reloaded is logged once, and its metrics are exported by the
// running registration only.
func TestDriftLoggedOnceAcrossReloads(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	store := NewStore("relog-"+t.Name(), new(MemoryBackend), nil)
	drift := ComputeDrift(store.Name(), []NodeRecord{
		{ID: "a", Fingerprints: []fleetinfo.Fingerprint{{Setting: "pki.root", Scope: "ca local", Value: "r1"}}},
		{ID: "b", Fingerprints: []fleetinfo.Fingerprint{{Setting: "pki.root", Scope: "ca local", Value: "r2"}}},
	})
	exported := func() int {
		ch := make(chan prometheus.Metric, 100)
		theFleetCollector.Collect(ch)
		close(ch)
		n := 0
		for m := range ch {
			if strings.Contains(m.Desc().String(), "caddylb_fleet_drift") {
				n++
			}
		}
		return n
	}
	var prev *fleetMember
	for range 5 { // a load, then four reloads: the new one starts, then the old stops
		m := &fleetMember{store: store, logger: zap.New(core)}
		m.report(2, drift)
		if prev != nil {
			prev.leave()
		}
		prev = m
		if exported() != 1 {
			t.Fatalf("drift series exported: %d, want 1", exported())
		}
	}
	if n := logs.FilterMessageSnippet("disagree on a setting").Len(); n != 1 {
		t.Fatalf("drift logged %d times over 4 reloads, want once", n)
	}
	prev.leave() // the store leaves the config
	if exported() != 0 {
		t.Fatal("a store no config runs still exports its drift")
	}
	prev.report(2, nil)
	if logs.FilterMessageSnippet("drift resolved").Len() != 1 {
		t.Fatal("resolution not logged")
	}
}
