package objectstore

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
)

// LoadFromConfig provisions the asset_store app of a config file
// (Caddyfile or JSON, adapted as `caddy run` would) in ctx, without
// starting anything else, and returns the named store (empty name: the
// only one). Cancelling ctx cleans the store up.
func LoadFromConfig(ctx caddy.Context, configFile, adapter, name string) (Store, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, fmt.Errorf("loading config %s: %v", configFile, err)
	}
	var cfg struct {
		Apps map[string]json.RawMessage `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %v", configFile, err)
	}
	raw, ok := cfg.Apps["asset_store"]
	if !ok {
		return nil, fmt.Errorf("config %s declares no asset store; add `asset_store <name> <s3|file> ...` to its global options", configFile)
	}
	// The app is provisioned directly: ctx.LoadModuleByID registers apps
	// in a running config, which an offline command has none of. The
	// stores inside are loaded through ctx as usual.
	app := new(App)
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(app); err != nil {
		return nil, fmt.Errorf("config %s: decoding asset_store: %v", configFile, err)
	}
	if err := app.Provision(ctx); err != nil {
		return nil, fmt.Errorf("config %s: %v", configFile, err)
	}
	return app.Store(name)
}
