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
	"sync"
	"time"
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

// published holds each config's fingerprints by the config's key (see Key).
var published = struct {
	sync.Mutex
	byConfig map[any]map[Fingerprint]bool
}{byConfig: map[any]map[Fingerprint]bool{}}

// Key names the config a context belongs to: contexts Caddy derives with
// WithValue share their config's Done channel, and Caddy makes one per
// config load.
func Key(ctx context.Context) any {
	if done := ctx.Done(); done != nil {
		return done
	}
	return ctx
}

// Publish records a fingerprint for the config ctx belongs to; it is
// dropped when that config is unloaded.
func Publish(ctx context.Context, setting, scope, value string) {
	key := Key(ctx)
	published.Lock()
	defer published.Unlock()
	m := published.byConfig[key]
	if m == nil {
		m = map[Fingerprint]bool{}
		published.byConfig[key] = m
		if done := ctx.Done(); done != nil {
			go func() {
				<-done
				published.Lock()
				delete(published.byConfig, key)
				published.Unlock()
			}()
		}
	}
	m[Fingerprint{Setting: setting, Scope: scope, Value: value}] = true
}

// Of returns the fingerprints of the config ctx belongs to, sorted.
func Of(ctx context.Context) []Fingerprint {
	published.Lock()
	m := published.byConfig[Key(ctx)]
	out := make([]Fingerprint, 0, len(m))
	for f := range m {
		out = append(out, f)
	}
	published.Unlock()
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

var loads = struct {
	sync.Mutex
	byConfig map[any]map[string][]LoadFunc // config -> store -> sources
}{byConfig: map[any]map[string][]LoadFunc{}}

// PublishLoad registers a source of in-flight request counts for the
// upstreams of a store, for the fleet-wide sums of /lb/upstreams.
func PublishLoad(ctx context.Context, store string, fn LoadFunc) {
	key := Key(ctx)
	loads.Lock()
	defer loads.Unlock()
	m := loads.byConfig[key]
	if m == nil {
		m = map[string][]LoadFunc{}
		loads.byConfig[key] = m
		if done := ctx.Done(); done != nil {
			go func() {
				<-done
				loads.Lock()
				delete(loads.byConfig, key)
				loads.Unlock()
			}()
		}
	}
	m[store] = append(m[store], fn)
}

// Load sums the in-flight requests per upstream of store in the config
// ctx belongs to. An upstream shared by several policies is counted once:
// Caddy keeps one request count per upstream address.
func Load(ctx context.Context, store string) map[string]int {
	loads.Lock()
	fns := append([]LoadFunc(nil), loads.byConfig[Key(ctx)][store]...)
	loads.Unlock()
	out := map[string]int{}
	for _, fn := range fns {
		for up, n := range fn() {
			out[up] = n
		}
	}
	return out
}
