package upstreamtls

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/reverseproxy"
	"go.uber.org/zap"

	"github.com/caddylb/caddylb/internal/fleetinfo"
)

// rootFingerprint is the SHA-256 of a root certificate, hex; "" for none.
func rootFingerprint(root *x509.Certificate) string {
	if root == nil {
		return ""
	}
	sum := sha256.Sum256(root.Raw)
	return hex.EncodeToString(sum[:])
}

// publishRoot tells the fleet registry which root the CA caID has on this
// node: nodes whose roots differ issue client certificates a backend
// trusting one of them refuses, and accept backend certificates only from
// their own.
func publishRoot(ctx context.Context, caID string, root *x509.Certificate) {
	fleetinfo.Publish(ctx, "pki.root", "ca "+caID, rootFingerprint(root))
}

// certRefusal reports whether err is a TLS alert with which the server
// refused this client's certificate (unknown CA, bad or missing
// certificate).
func certRefusal(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	i := strings.Index(msg, "remote error: tls: ")
	if i < 0 {
		return false
	}
	alert := msg[i+len("remote error: tls: "):]
	for _, a := range []string{"unknown certificate authority", "bad certificate", "certificate required", "certificate unknown", "unsupported certificate", "certificate expired", "certificate revoked", "access denied"} {
		if strings.HasPrefix(alert, a) {
			return true
		}
	}
	return false
}

// refusalMarker is in the text of a dial error that reportRefusal
// already counted and logged, so that RoundTrip, which sees the error
// again (wrapped by net/http), does not count it twice.
const refusalMarker = "it refused this node's client certificate"

// refusalLog limits the refusal log to one line per upstream every
// refusalLogInterval.
type refusalLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

const refusalLogInterval = 10 * time.Second

func (l *refusalLog) due(upstream string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[string]time.Time{}
	}
	if now.Sub(l.last[upstream]) < refusalLogInterval {
		return false
	}
	l.last[upstream] = now
	return true
}

// reportRefusal logs, naming this node and the root its client
// certificate chains to, that upstream refused the certificate, and
// answers whether err was such a refusal. A fleet whose nodes have
// different roots shows here which node's root the backend does not
// trust (and in GET /lb/fleet as pki.root drift).
func (r *Reencrypt) reportRefusal(ctx context.Context, upstream string, err error) bool {
	if r.clientCert == nil || !certRefusal(err) {
		return false
	}
	if strings.Contains(err.Error(), refusalMarker) {
		return true // the dial reported it already; RoundTrip sees it again
	}
	if info, ok := reverseproxy.GetDialInfo(ctx); ok && info.Address != "" {
		upstream = info.Address
	}
	handshakeFailures.WithLabelValues(upstream, reasonClientCertRefused).Inc()
	if r.refusals.due(upstream, time.Now()) {
		self := fleetinfo.Self()
		r.logger.Error("upstream refused this node's client certificate: it does not trust this node's internal CA root; share the CA across the fleet (shared storage, or the exported root) and give the backend that root",
			zap.String("upstream", upstream),
			zap.String("node", self.ID),
			zap.String("ca", r.clientCA),
			zap.String("root_sha256", r.clientRoot),
			zap.Error(err))
	}
	return true
}
