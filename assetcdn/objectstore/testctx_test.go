package objectstore

import (
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// caddyContext is a bare Caddy context for provisioning modules in tests.
func caddyContext(t testing.TB) caddy.Context {
	t.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: t.Context()})
	t.Cleanup(cancel)
	return ctx
}
