// Package reloadwarn warns, once per process, when a config reload would
// reset connections (docs/tuning.md, "Reloads under load"). The modules
// caddy-lb configs have call it at provisioning: the admin API module at
// every load while the admin endpoint is on, and forwarded, both sticky
// policies, the passthrough listener wrapper and the session store app
// also where it is off (caddy run --watch reloads without it).
package reloadwarn

import (
	"os"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// migrateReqPath is Linux's switch for handing the connections queued on a
// closing SO_REUSEPORT listener to another listener of its port.
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

var once sync.Once

// Check warns, once per process, when a config reload would
// reset connections. On Linux Caddy binds each listener of a new config as
// a new SO_REUSEPORT socket and closes the old one once the new is up; the
// kernel spreads new connections over both meanwhile, and those still
// queued on the old socket when it closes are reset unless
// net.ipv4.tcp_migrate_req is 1 (Linux 5.14 and later), which hands them to
// the new socket instead (docs/tuning.md, "Reloads under load").
func Check(log *zap.Logger) {
	once.Do(func() {
		if msg := reloadResetWarning(migrateReqPath); msg != "" {
			log.Warn(msg, zap.String("sysctl", migrateReqPath))
		}
	})
}

// reloadResetWarning is the warning for the setting at path, or "" when
// there is nothing to warn of: the setting is on, or the kernel has none
// (not Linux, or older than 5.14).
func reloadResetWarning(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || strings.TrimSpace(string(b)) != "0" {
		return ""
	}
	return "net.ipv4.tcp_migrate_req is 0: a config reload resets the connections the kernel has queued on the old listener; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1, docs/tuning.md)"
}
