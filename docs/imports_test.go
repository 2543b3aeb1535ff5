package docs

import (
	"os/exec"
	"strings"
	"testing"
)

// allowedImports is docs/architecture.md's import table: the caddy-lb
// packages each one may import (besides internal/..., which all may).
var allowedImports = map[string][]string{
	"sessionstore":          nil,
	"lbmodule/affinity":     {"sessionstore"},
	"lbmodule/forwarded":    nil,
	"lbmodule/upstreamtls":  nil,
	"lbmodule/lbadmin":      {"lbmodule/affinity", "lbmodule/l4sticky", "sessionstore"},
	"lbmodule/l4sticky":     {"sessionstore"},
	"lbmodule/dashboard":    {"lbmodule/lbadmin", "lbmodule/affinity", "lbmodule/l4sticky", "sessionstore", "assetcdn", "assetcdn/objectstore", "logship", "logship/logquery"},
	"assetcdn/objectstore":  nil,
	"assetcdn":              {"assetcdn/objectstore"},
	"logship":               {"assetcdn/objectstore", "logship/logquery"},
	"logship/logquery":      nil,
	"internal/boundedcache": nil,
	"internal/fleetinfo":    nil,
	"internal/gctune":       nil,
	"internal/lbstats":      nil,
	"internal/perconfig":    nil,
	"internal/promreg":      nil,
	"internal/quantity":     nil,
	"internal/reloadwarn":   nil,
	"internal/rendezvous":   nil,
}

// TestImportRules checks with `go list -deps` that no package imports
// more of caddy-lb than docs/architecture.md allows: arrows point down
// the table, and no module package imports caddyfile/, integration/ or
// the root package.
func TestImportRules(t *testing.T) {
	const module = "github.com/caddylb/caddylb/"
	for pkg, allowed := range allowedImports {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "../"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			rel, ok := strings.CutPrefix(dep, module)
			if !ok || rel == pkg || strings.HasPrefix(rel, "internal/") {
				continue
			}
			ok = false
			for _, a := range allowed {
				ok = ok || rel == a
			}
			if !ok {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow", pkg, rel)
			}
		}
	}
}
