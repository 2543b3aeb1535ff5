// Package fleetinfo is what one caddy-lb node tells the others about
// itself: who it is, and fingerprints of the settings every node sharing a
// store must agree on (a sticky policy's secrets, key, cookie, ttl and
// upstreams; upload signing secrets; the internal CA's root). Modules
// publish fingerprints while they are provisioned; the session store's
// fleet registry reads those of the running config and writes them, with
// the node's identity, to every shared store.
//
// A fingerprint never reveals a secret: secrets are reduced to an HMAC of
// a fixed message keyed by the secret, of which 12 bytes are kept.
package fleetinfo

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/caddylb/caddylb/internal/perconfig"
)

// Node identifies this process. It is fixed for the process's life, so a
// config reload keeps the node's id.
type Node struct {
	ID       string    `json:"id"`
	Hostname string    `json:"hostname"`
	Started  time.Time `json:"started"`
}

var self = func() Node {
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := os.Getenv("CADDYLB_NODE_ID")
	if id == "" {
		id = host + "-" + hex.EncodeToString(b)
	}
	return Node{ID: id, Hostname: host, Started: time.Now().UTC().Truncate(time.Second)}
}()

// Self is this node.
func Self() Node { return self }

// Fingerprint is one setting's value as the fleet compares it.
type Fingerprint struct {
	// Setting names what is compared, such as "sticky.secrets".
	Setting string `json:"setting"`
	// Scope is what it belongs to, such as "store redis, namespace cookie:lb_affinity".
	Scope string `json:"scope"`
	// Value is the setting's value, or a digest of it for secrets.
	Value string `json:"value"`
}

// SecretDigest reduces secrets to a fingerprint that tells whether two
// nodes hold the same ones without revealing them: the hex of the first
// 12 bytes of HMAC-SHA256(secret, "caddylb fleet fingerprint v1") for each,
// joined by commas in order (the first signs, so order matters).
func SecretDigest(secrets ...string) string {
	parts := make([]string, len(secrets))
	for i, s := range secrets {
		m := hmac.New(sha256.New, []byte(s))
		m.Write([]byte("caddylb fleet fingerprint v1"))
		parts[i] = hex.EncodeToString(m.Sum(nil)[:12])
	}
	return strings.Join(parts, ",")
}

var published perconfig.Map[map[Fingerprint]bool]

// Publish records a fingerprint for the config ctx belongs to; it is
// dropped when that config is unloaded.
func Publish(ctx context.Context, setting, scope, value string) {
	published.With(ctx, func() map[Fingerprint]bool { return map[Fingerprint]bool{} }, func(m map[Fingerprint]bool) {
		m[Fingerprint{Setting: setting, Scope: scope, Value: value}] = true
	})
}

// Of returns the fingerprints of the config ctx belongs to, sorted.
func Of(ctx context.Context) []Fingerprint {
	var out []Fingerprint
	published.Get(ctx, func(m map[Fingerprint]bool, _ bool) {
		out = make([]Fingerprint, 0, len(m))
		for f := range m {
			out = append(out, f)
		}
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Setting != out[j].Setting {
			return out[i].Setting < out[j].Setting
		}
		if out[i].Scope != out[j].Scope {
			return out[i].Scope < out[j].Scope
		}
		return out[i].Value < out[j].Value
	})
	return out
}

// LoadFunc reports the requests in flight to each upstream, by address.
type LoadFunc func() map[string]int

var loads perconfig.Map[map[string][]LoadFunc] // store -> sources

// PublishLoad registers a source of in-flight request counts for the
// upstreams of a store, for the fleet-wide sums of /lb/upstreams.
func PublishLoad(ctx context.Context, store string, fn LoadFunc) {
	loads.With(ctx, func() map[string][]LoadFunc { return map[string][]LoadFunc{} }, func(m map[string][]LoadFunc) {
		m[store] = append(m[store], fn)
	})
}

// Load sums the in-flight requests per upstream of store in the config
// ctx belongs to. An upstream shared by several policies is counted once:
// Caddy keeps one request count per upstream address.
func Load(ctx context.Context, store string) map[string]int {
	var fns []LoadFunc
	loads.Get(ctx, func(m map[string][]LoadFunc, _ bool) { fns = append(fns, m[store]...) })
	out := map[string]int{}
	for _, fn := range fns {
		for up, n := range fn() {
			out[up] = n
		}
	}
	return out
}
