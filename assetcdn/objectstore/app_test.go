package objectstore

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

type ctxKey struct{}

// TestWhenStartedFindsTheAppWhoeverProvisionedIt: a log writer waits with
// the config's own context, while the app may be provisioned first by a
// handler, with the context Caddy derived for that handler's server. The
// hook must run either way.
func TestWhenStartedFindsTheAppWhoeverProvisionedIt(t *testing.T) {
	for _, tc := range []struct {
		name   string
		derive func(caddy.Context) caddy.Context
	}{
		{"config context", func(c caddy.Context) caddy.Context { return c }},
		{"server context", func(c caddy.Context) caddy.Context { return c.WithValue(ctxKey{}, "srv0") }},
		{"nested value", func(c caddy.Context) caddy.Context {
			c = c.WithValue(ctxKey{}, "srv0")
			c.Context = context.WithValue(c.Context, ctxKey{}, "route")
			return c
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := caddyContext(t)
			ran := 0
			cancel := WhenStarted(cfg, func(*App) error { ran++; return nil })
			defer cancel()
			app := &App{StoresRaw: map[string]json.RawMessage{
				"logs": json.RawMessage(`{"backend":"file","root":"` + t.TempDir() + `"}`),
			}}
			if err := app.Provision(tc.derive(cfg)); err != nil {
				t.Fatal(err)
			}
			if err := app.Start(); err != nil {
				t.Fatal(err)
			}
			if ran != 1 {
				t.Fatalf("hook ran %d times, want 1", ran)
			}
		})
	}
}

// TestWhenStartedKeepsConfigsApart: the app of one config never runs the
// hooks of another.
func TestWhenStartedKeepsConfigsApart(t *testing.T) {
	first, second := caddyContext(t), caddyContext(t)
	ran := 0
	cancel := WhenStarted(first, func(*App) error { ran++; return nil })
	defer cancel()
	app := &App{}
	if err := app.Provision(second.WithValue(ctxKey{}, "srv0")); err != nil {
		t.Fatal(err)
	}
	if err := app.Start(); err != nil {
		t.Fatal(err)
	}
	if ran != 0 {
		t.Fatalf("the other config's hook ran %d times", ran)
	}
}
