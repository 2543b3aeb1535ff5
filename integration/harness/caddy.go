package harness

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/caddylb/caddylb/internal/testproc"
)

// CaddyfileData is what a Caddyfile template passed to StartCaddy sees.
// A template puts {{.Global}} in its global options block and listens on
// {{.HTTPPort}}, for example:
//
//	{
//		{{.Global}}
//	}
//	:{{.HTTPPort}} {
//		reverse_proxy {{.X.upstreams}}
//	}
type CaddyfileData struct {
	// AdminAddr is the admin endpoint, 127.0.0.1:port.
	AdminAddr string
	// HTTPPort and HTTPSPort are free loopback ports, also set as the
	// http_port and https_port global options.
	HTTPPort  int
	HTTPSPort int
	// Global is the global options that keep the test hermetic: admin
	// address, ports, listening on 127.0.0.1 only, storage in a temporary
	// directory, no trust store install, no config persistence, a short
	// grace period.
	Global string
	// GlobalShared is Global without the storage line, for nodes that
	// share one storage (a template then sets its own `storage`).
	GlobalShared string
	// X holds the extra fields given to StartCaddyWith, as .X.name.
	X map[string]any
}

// Caddy is a running caddy-lb process.
type Caddy struct {
	CaddyfileData
	// Dir is the temporary directory holding the config, HOME and storage.
	Dir string

	configPath string
	proc       *testproc.Proc
}

// caddyReadyTimeout bounds a (re)start: a cold Caddy with TLS storage
// setup takes well under a second, so 20 s means it is stuck.
const caddyReadyTimeout = 20 * time.Second

// StartCaddy renders tmpl (see CaddyfileData), runs the caddy-lb binary
// with it, and waits until the admin endpoint and the HTTP port answer.
func StartCaddy(t testing.TB, tmpl string) *Caddy {
	t.Helper()
	return StartCaddyWith(t, tmpl, nil)
}

// StartCaddyWith is StartCaddy with extra template fields, reachable as
// .X.name; a template naming a field that is not in data fails the test.
func StartCaddyWith(t testing.TB, tmpl string, data map[string]any) *Caddy {
	t.Helper()
	return StartCaddyUnder(t, nil, tmpl, data)
}

// StartCaddyUnder is StartCaddyWith with the binary run by a wrapper
// command, e.g. {"/bin/sh", "-c", `ulimit -f 128 && exec "$0" "$@"`}
// for a file size limit: the binary and its arguments follow the
// wrapper's own.
func StartCaddyUnder(t testing.TB, wrapper []string, tmpl string, data map[string]any) *Caddy {
	t.Helper()
	return startCaddy(t, wrapper, nil, tmpl, data)
}

// StartCaddyNode is StartCaddyWith for one node of a fleet: the process
// gets CADDYLB_NODE_ID=id, the id it registers under.
func StartCaddyNode(t testing.TB, id, tmpl string, data map[string]any) *Caddy {
	t.Helper()
	return startCaddy(t, nil, []string{"CADDYLB_NODE_ID=" + id}, tmpl, data)
}

func startCaddy(t testing.TB, wrapper, env []string, tmpl string, data map[string]any) *Caddy {
	t.Helper()
	bin := CaddyBinary(t)
	dir := t.TempDir()
	c := &Caddy{Dir: dir, configPath: filepath.Join(dir, "Caddyfile")}
	c.AdminAddr = testproc.FreeAddr(t)
	c.HTTPPort = testproc.FreePort(t)
	c.HTTPSPort = testproc.FreePort(t)
	c.Global = globalOptions(c.AdminAddr, c.HTTPPort, c.HTTPSPort, filepath.Join(dir, "storage"))
	c.GlobalShared = globalOptions(c.AdminAddr, c.HTTPPort, c.HTTPSPort, "")
	c.X = data
	c.writeConfig(t, c.render(t, tmpl))

	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(c.HTTPPort))
	path, args := bin, []string{"run", "--config", c.configPath, "--adapter", "caddyfile"}
	if len(wrapper) > 0 {
		path, args = wrapper[0], append(append(wrapper[1:len(wrapper):len(wrapper)], bin), args...)
	}
	c.proc = testproc.Start(t, testproc.Spec{
		Name: "caddy",
		Path: path,
		Args: args,
		Env: append([]string{
			"HOME=" + filepath.Join(dir, "home"),
			"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
			"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		}, env...),
		Dir:  dir,
		Addr: httpAddr,
		Ready: func() error {
			if err := adminAnswers(c.AdminAddr); err != nil {
				return err
			}
			return testproc.DialTCP(httpAddr)
		},
		ReadyTimeout: caddyReadyTimeout,
	})
	return c
}

// globalOptions are the lines StartCaddy puts in the global options block.
// With storageDir "" there is no storage line.
func globalOptions(adminAddr string, httpPort, httpsPort int, storageDir string) string {
	lines := []string{
		"admin " + adminAddr,
		"default_bind 127.0.0.1",
		"http_port " + strconv.Itoa(httpPort),
		"https_port " + strconv.Itoa(httpsPort),
		"skip_install_trust",
		"grace_period 1s",
		"persist_config off",
	}
	if storageDir != "" {
		lines = append(lines, "storage file_system "+strconv.Quote(storageDir))
	}
	return strings.Join(lines, "\n\t")
}

// render executes tmpl with c's data. A template that leaves out
// {{.Global}} would start Caddy on the default admin port, shared by every
// test, so it fails the test instead.
func (c *Caddy) render(t testing.TB, tmpl string) string {
	t.Helper()
	parsed, err := template.New("Caddyfile").Option("missingkey=error").Parse(tmpl)
	if err != nil {
		t.Fatalf("parsing Caddyfile template: %v", err)
	}
	var b bytes.Buffer
	if err := parsed.Execute(&b, c.CaddyfileData); err != nil {
		t.Fatalf("rendering Caddyfile template: %v", err)
	}
	if !strings.Contains(b.String(), "admin "+c.AdminAddr) {
		t.Fatalf("Caddyfile template must put {{.Global}} in its global options block:\n%s", b.String())
	}
	return b.String()
}

func (c *Caddy) writeConfig(t testing.TB, caddyfile string) {
	t.Helper()
	if err := os.WriteFile(c.configPath, []byte(caddyfile), 0o644); err != nil {
		t.Fatalf("writing Caddyfile: %v", err)
	}
}

// URL is http://127.0.0.1:<HTTPPort><path>.
func (c *Caddy) URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(c.HTTPPort) + path
}

// AdminURL is http://<AdminAddr><path>.
func (c *Caddy) AdminURL(path string) string {
	return "http://" + c.AdminAddr + path
}

// Reload renders tmpl with the same ports and extra fields and loads it
// through the admin API; it fails the test unless Caddy accepts it. The new
// config is also what Restart starts with.
func (c *Caddy) Reload(t testing.TB, tmpl string) {
	t.Helper()
	c.ReloadWith(t, tmpl, c.X)
}

// ReloadWith is Reload with new extra fields.
func (c *Caddy) ReloadWith(t testing.TB, tmpl string, data map[string]any) {
	t.Helper()
	c.X = data
	caddyfile := c.render(t, tmpl)
	resp, err := adminClient.Post(c.AdminURL("/load"), "text/caddyfile", strings.NewReader(caddyfile))
	if err != nil {
		t.Fatalf("reloading Caddy: POST /load: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("reloading Caddy: POST /load: %s: %s\nCaddyfile:\n%s", resp.Status, body, caddyfile)
	}
	c.writeConfig(t, caddyfile)
}

// Kill sends SIGKILL and waits for Caddy to exit.
func (c *Caddy) Kill() { c.proc.Kill() }

// Stop sends SIGTERM and waits for Caddy to exit.
func (c *Caddy) Stop() { c.proc.Stop() }

// Restart starts Caddy again on the same ports with the latest config and
// waits until it answers; a Caddy that still runs is killed first.
func (c *Caddy) Restart(t testing.TB) {
	t.Helper()
	c.proc.Restart(t)
}

// Log is what Caddy wrote to stdout and stderr, across restarts.
func (c *Caddy) Log() string { return c.proc.Log() }

// Pid is the process id of the running caddy, for reading its memory
// use from /proc.
func (c *Caddy) Pid() int { return c.proc.Pid() }

// adminClient talks to Caddy's admin endpoint; /load waits for the new
// config to start, hence the longer timeout.
var adminClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Proxy: nil}}

// probeClient asks whether a process is up; no keep-alive, so a probe never
// reuses a connection to a process that has since been killed.
var probeClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

func adminAnswers(adminAddr string) error {
	resp, err := probeClient.Get("http://" + adminAddr + "/config/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /config/: %s", resp.Status)
	}
	return nil
}
